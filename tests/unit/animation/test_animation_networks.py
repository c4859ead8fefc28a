"""Every network's state_dict equals the manifest, key for key, shape for shape, dtype for dtype."""
import pytest

from backend.pipelines.animation.checkpoints import MAPPING_NETWORKS, SAFETENSORS_NETWORKS, build_empty
from scripts.checkpoints.sadtalker import manifest, manifest_shapes

DTYPES = {"torch.float32": "float32", "torch.int64": "int64"}


@pytest.mark.parametrize("network", [*SAFETENSORS_NETWORKS, *MAPPING_NETWORKS])
def test_state_dict_matches_manifest(network):
    ours = {key: (tuple(value.shape), DTYPES[str(value.dtype)]) for key, value in build_empty(network).state_dict().items()}
    expected = manifest_shapes(network)
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}
    assert len(ours) == manifest()["networks"][network]["num_tensors"]


def test_prefixes_cover_the_safetensors_file():
    files = manifest()["checkpoint_files"]["SadTalker_V0.0.2_256.safetensors"]
    assert set(files["top_level_prefixes"]) == {prefix for _, prefix in SAFETENSORS_NETWORKS.values()}
    total = sum(manifest()["networks"][name]["num_tensors"] for name in SAFETENSORS_NETWORKS)
    assert total == files["expected_num_tensors"]
