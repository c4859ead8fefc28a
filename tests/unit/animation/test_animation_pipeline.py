"""AnimationPipeline end to end on random-weight official checkpoints, and its input validation."""
import numpy as np
import pytest

from backend.errors import BadRequest, InvalidImage, ModelUnavailable, NoFaceDetected, PayloadTooLarge
from backend.pipelines.animation.pipeline import STAGES, AnimationOptions, AnimationPipeline, JobCancelled, image_size
from backend.pipelines.animation.video import probe
from tests.conftest import speech_like


@pytest.fixture
def pipeline(animation_settings):
    events = []
    pipe = AnimationPipeline(animation_settings, progress=lambda stage, done, total: events.append((stage, done, total)))
    pipe.load()
    pipe.events = events
    return pipe


def request(image, tmp_path, seconds=0.12, **options):
    return {"image": image, "audio": speech_like(seconds), "output_path": tmp_path / "out.mp4", **options}


def job_in_this_process(settings, image, output_path, seconds):
    """One job as the jobs engine runs it in a spawned child: (result, progress events, peak RSS MB)."""
    from backend.memory.readings import peak_rss_mb

    events = []
    pipe = AnimationPipeline(settings, progress=lambda stage, done, total: events.append((stage, done, total)))
    pipe.load()
    result = pipe({"image": image, "audio": speech_like(seconds), "output_path": output_path, "seed": 3})
    return result, events, peak_rss_mb()


def test_image_and_audio_make_an_mp4_in_a_spawned_child(animation_settings, test_images, tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, as the jobs engine starts a job: nothing may depend on state inherited from the parent
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        settings = animation_settings.model_copy(update={"animation_batch_size": 1})
        result, events, peak_mb = pool.submit(job_in_this_process, settings, test_images["astronaut"],
                                              tmp_path / "out.mp4", 0.08).result()
    facts = probe(result["path"])
    assert facts["frames"] == result["frames"] == 2  # 25 fps x 0.08 s: two frames, two batches
    assert facts["video_codec"] == "h264" and facts["audio_codec"] == "aac"
    assert facts["width"] == 256 and abs(facts["height"] - 256) <= 4  # aspect of the crop box restored
    stages = [stage for stage, _, _ in events]
    assert [stage for i, stage in enumerate(stages) if stage not in stages[:i]] == list(STAGES)
    assert [event for event in events if event[0] == "render"] == [("render", 0, 2), ("render", 1, 2), ("render", 2, 2)]
    assert ("encode", 2, 2) in events
    assert list(tmp_path.iterdir()) == [tmp_path / "out.mp4"]
    assert peak_mb > 400  # the child measured itself: the generator's weights alone are 404 MB


def test_cancel_stops_the_job_and_leaves_nothing(animation_settings, test_images, tmp_path):
    events = []
    pipe = AnimationPipeline(animation_settings, progress=lambda stage, done, total: events.append(stage),
                             cancelled=lambda: "coefficients" in events)
    pipe.load()
    with pytest.raises(JobCancelled, match="after the coefficients stage"):
        pipe(request(test_images["astronaut"], tmp_path))
    assert "render" not in events
    assert list(tmp_path.iterdir()) == []


def test_the_cat_is_refused_before_any_work(pipeline, test_images, tmp_path):
    with pytest.raises(NoFaceDetected, match="detected no face"):
        pipeline.preprocess(request(test_images["chelsea"], tmp_path))
    assert not any(stage == "3dmm" for stage, _, _ in pipeline.events)


@pytest.mark.parametrize("image, error", [
    (b"", InvalidImage), (b"not an image at all", InvalidImage),
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", InvalidImage),
])
def test_bad_images(pipeline, tmp_path, image, error):
    with pytest.raises(error):
        pipeline.preprocess(request(image, tmp_path))


def test_decompression_bomb_is_refused_from_the_header(pipeline, tmp_path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0))
    bomb = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    with pytest.raises(PayloadTooLarge, match="50000x50000|too many pixels"):
        pipeline.preprocess(request(bomb, tmp_path))


@pytest.mark.parametrize("options", [
    {"size": 384}, {"preprocess": "extcrop"}, {"pose_style": 46}, {"pose_style": -1}, {"still": "yes"},
    {"expression_scale": -1}, {"seed": 1.5},
])
def test_bad_options(pipeline, test_images, tmp_path, options):
    with pytest.raises(BadRequest):
        pipeline.preprocess(request(test_images["astronaut"], tmp_path, **options))


def test_audio_limits(pipeline, test_images, tmp_path):
    with pytest.raises(PayloadTooLarge, match="MAX_ANIMATION_SECONDS"):
        pipeline.preprocess(request(test_images["astronaut"], tmp_path, seconds=61))
    with pytest.raises(BadRequest, match="at least 80 ms"):
        pipeline.preprocess(request(test_images["astronaut"], tmp_path, seconds=0.05))


def test_missing_checkpoints_name_every_file(animation_settings, test_images, tmp_path):
    animation_settings.sadtalker_checkpoint_dir = tmp_path / "empty"
    pipe = AnimationPipeline(animation_settings)
    pipe.load()
    with pytest.raises(ModelUnavailable) as caught:
        pipe.preprocess(request(test_images["astronaut"], tmp_path, size=512, preprocess="full"))
    assert caught.value.details["missing_files"] == ["SadTalker_V0.0.2_512.safetensors", "mapping_00109-model.pth.tar"]


def test_seed_makes_coefficients_reproducible(animation_settings):
    from backend.pipelines.animation import checkpoints
    from backend.pipelines.animation.audio import mel_windows
    from backend.pipelines.animation.coeffs import predict_coefficients

    expnet = checkpoints.load_network(animation_settings.sadtalker_checkpoint_dir, 256, "audio2exp")
    posevae = checkpoints.load_network(animation_settings.sadtalker_checkpoint_dir, 256, "audio2pose")
    windows = mel_windows(speech_like(1.4))  # 35 frames: one whole PoseVAE chunk of 32 and a remainder
    source = np.random.default_rng(0).standard_normal(73).astype(np.float32)
    a = predict_coefficients(expnet, posevae, windows, source, style=5, seed=7)
    b = predict_coefficients(expnet, posevae, windows, source, style=5, seed=7)
    c = predict_coefficients(expnet, posevae, windows, source, style=5, seed=8)
    d = predict_coefficients(expnet, posevae, windows, source, style=30, seed=7)
    assert a.shape == (35, 70) and np.array_equal(a, b)
    assert not np.array_equal(a[:, 64:], c[:, 64:]) and not np.array_equal(a[:, 64:], d[:, 64:])


def test_availability_names_what_is_missing_and_weighs_the_generator(make_settings, animation_settings, tmp_path):
    available = AnimationPipeline.find_files(animation_settings)
    assert available.servable and available.identity
    assert 400 < available.weights_mb < 460  # generator 404 MB fp32 + the mapping net
    unset = AnimationPipeline.find_files(make_settings(face_model_dir=animation_settings.face_model_dir))
    assert not unset.servable and "SADTALKER_CHECKPOINT_DIR is not set" in unset.reason
    assert "SadTalker_V0.0.2_256.safetensors" in unset.reason and "vinthony/SadTalker-V002rc" in unset.fix
    no_faces = AnimationPipeline.find_files(make_settings(face_model_dir=tmp_path))
    assert not no_faces.servable and "face_landmark.tflite" in no_faces.reason and "fetch_face_assets" in no_faces.fix


def test_options_and_image_header_are_checked_without_a_model(test_images):
    options = AnimationOptions.from_mapping({"size": 512, "preprocess": "full", "image": b"ignored"})
    assert options.required_files() == ["SadTalker_V0.0.2_512.safetensors", "mapping_00109-model.pth.tar"]
    assert AnimationOptions.from_mapping({}) == AnimationOptions()
    assert image_size(test_images["astronaut"], 16_000_000) == (512, 512)
    with pytest.raises(PayloadTooLarge):
        image_size(test_images["astronaut"], 512 * 512 - 1)


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    {"preprocess": "resize"}, {"preprocess": "full"}, {"still": True, "pose_style": 45, "expression_scale": 2.0},
])
def test_modes_end_to_end(pipeline, test_images, tmp_path, options):
    result = pipeline(request(test_images["astronaut"], tmp_path, seconds=0.2, **options))
    facts = probe(result["path"])
    assert facts["frames"] == 5 and facts["audio_codec"] == "aac"
    if options.get("preprocess") == "full":
        assert (facts["width"], facts["height"]) == (512, 512)
    else:
        assert facts["width"] == 256


@pytest.mark.slow
def test_size_512_end_to_end(animation_settings, test_images, tmp_path_factory, tmp_path):
    from scripts.checkpoints.sadtalker import build_sadtalker_checkpoints

    animation_settings.sadtalker_checkpoint_dir = build_sadtalker_checkpoints(tmp_path_factory.mktemp("st512"), sizes=(512,))
    pipe = AnimationPipeline(animation_settings)
    pipe.load()
    result = pipe(request(test_images["astronaut"], tmp_path, seconds=0.08, size=512))
    facts = probe(result["path"])
    assert facts["frames"] == 2 and facts["width"] == 512


@pytest.mark.slow
def test_cancel_between_render_batches_leaves_nothing(animation_settings, test_images, tmp_path):
    events = []
    pipe = AnimationPipeline(animation_settings, progress=lambda stage, done, total: events.append((stage, done)),
                             cancelled=lambda: ("render", 2) in events)
    pipe.load()
    with pytest.raises(JobCancelled, match="after 2 of 3 frames"):
        pipe(request(test_images["astronaut"], tmp_path))
    assert ("encode", 2) in events  # the first batch was rendered and encoded before the cancel
    assert list(tmp_path.iterdir()) == []
