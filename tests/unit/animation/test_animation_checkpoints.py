import pytest
import torch

from backend.errors import ModelUnavailable
from backend.pipelines.animation import checkpoint_files, checkpoints
from scripts.checkpoints.sadtalker import build_sadtalker_checkpoints


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    """Real-shape subset: only ExpNet and the 3DMM net in the 256 file, plus both mapping files."""
    return build_sadtalker_checkpoints(tmp_path_factory.mktemp("subset"), networks=("audio2exp", "face_3drecon"),
                                       mappings=("mapping_00229", "mapping_00109"))


def test_networks_load_strictly_from_the_official_names(small_dir):
    expnet = checkpoints.load_network(small_dir, 256, "audio2exp")
    assert not any(p.is_meta for p in expnet.parameters())
    out = expnet(torch.zeros(3, 1, 80, 16), torch.zeros(3, 64), torch.zeros(3, 1))
    assert out.shape == (3, 64) and torch.isfinite(out).all()
    recon = checkpoints.load_network(small_dir, 256, "face_3drecon", torch.float32)
    assert recon(torch.rand(1, 3, 224, 224)).shape == (1, 257)
    for full, width in ((False, 70), (True, 73)):
        mapping = checkpoints.load_mapping(small_dir, full=full)
        assert mapping.first[0].weight.shape[1] == width


def test_a_network_absent_from_the_file_is_a_clear_error(small_dir):
    with pytest.raises(ModelUnavailable, match="no 'generator.' tensors"):
        checkpoints.load_network(small_dir, 256, "generator")


def test_missing_files_are_all_named(tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        checkpoint_files.require_files(tmp_path, checkpoint_files.all_files())
    message = caught.value.message
    for name in checkpoint_files.all_files():
        assert name in message
    assert "vinthony/SadTalker-V002rc" in message
    assert caught.value.details["missing_files"] == checkpoint_files.all_files()
    with pytest.raises(ModelUnavailable, match="SADTALKER_CHECKPOINT_DIR is not set"):
        checkpoint_files.require_files(None, ["mapping_00229-model.pth.tar"])


def test_wrong_shapes_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"audio2exp.mapping1.weight": torch.zeros(2, 2)}, str(tmp_path / "SadTalker_V0.0.2_256.safetensors"))
    with pytest.raises(ModelUnavailable, match="does not match the SadTalker architecture"):
        checkpoints.load_network(tmp_path, 256, "audio2exp")
