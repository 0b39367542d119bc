import json

import numpy as np
import torch

from provenance.keys import WatermarkKey
from provenance.result import DetectionResult


def test_json_round_trip_with_numpy_and_torch_values():
    key = WatermarkKey.from_seed(5)
    result = DetectionResult(
        detected=True, p_value=np.float64(1e-9), score=np.float32(7.5), threshold=4.0, fpr=0.01,
        scheme="kgw", key_id=key.key_id, payload="beef", bit_accuracy=0.98,
        details={"counts": np.arange(3), "t": torch.tensor([1.5]), "n": np.int64(4)},
    )
    data = json.loads(result.to_json())
    assert data["details"] == {"counts": [0, 1, 2], "t": [1.5], "n": 4}
    back = DetectionResult.from_json(result.to_json())
    assert back.detected and back.p_value == 1e-9 and back.payload == "beef" and back.key_id == key.key_id


def test_result_carries_key_id_not_secret():
    key = WatermarkKey.from_seed(6)
    result = DetectionResult(False, 0.5, 0.1, 4.0, 0.01, "kgw", key.key_id)
    assert key.secret.hex() not in result.to_json()
    assert key.secret.hex() not in repr(result)
