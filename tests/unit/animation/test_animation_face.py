import io

import numpy as np
import pytest
from PIL import Image

from backend.pipelines.animation import face


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def landmarker(face_model_dir):
    return face.FaceLandmarker(face_model_dir)


def test_astronaut_detection_matches_mediapipe(landmarker, test_images):
    score, box, keypoints = landmarker.detect_faces(decode(test_images["astronaut"]))[0]
    # real MediaPipe on this image (OFFLINE_ASSETS.md): 0.9217, [177.6, 82.9, 272.9, 178.2]
    assert score == pytest.approx(0.9217, abs=2e-3)
    assert np.allclose(box, [177.6, 82.9, 272.9, 178.2], atol=0.5)


def test_astronaut_landmarks_are_a_face(landmarker, test_images):
    lm = landmarker.landmarks(decode(test_images["astronaut"])).landmarks68
    eye_l, eye_r, nose, mouth_l, mouth_r = face.five_points(lm)
    assert eye_l[0] < nose[0] < eye_r[0]  # image left to right
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert 30 < eye_r[0] - eye_l[0] < 60  # the face is ~95 px wide
    assert lm[8, 1] > mouth_l[1]  # chin below the mouth


def test_cat_has_no_face(landmarker, test_images):
    image = decode(test_images["chelsea"])
    assert landmarker.detect_faces(image) == []
    with pytest.raises(face.NoFaceFound, match="no face detected"):
        landmarker.landmarks(image)


def test_crop_box_is_the_reference_quad(landmarker, test_images):
    image = decode(test_images["astronaut"])
    lm = landmarker.landmarks(image).landmarks68
    box = face.crop_box(lm, image.shape[1], image.shape[0])
    x1, y1, x2, y2 = box.box
    assert box.shrink == 1
    assert x1 < lm[:, 0].min() and x2 > lm[:, 0].max() and y1 < lm[:, 1].min() and y2 > lm[:, 1].max()
    assert abs((x2 - x1) - (y2 - y1)) <= 2  # a square quad on an upright face


@pytest.mark.parametrize("mode", ["crop", "resize", "full"])
def test_prepare_source_modes(landmarker, test_images, mode):
    image = decode(test_images["astronaut"])
    detected = landmarker.landmarks(image)
    source = face.prepare_source(image, detected, 256, mode)
    assert source.pixels.shape == (256, 256, 3) and source.pixels.dtype == np.uint8
    if mode == "resize":
        assert source.region == (0, 0, 512, 512)
        assert np.allclose(source.landmarks68, (detected.landmarks68 + 0.5) / 2 - 0.5)
    image224, trans = face.recon_input(source)
    assert image224.shape == (224, 224, 3) and 0 <= image224.min() and image224.max() <= 1
    assert trans[0] == trans[1] == 256 and trans[2] > 0


def test_phase_free_resize_is_cv2_linear():
    image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    up = face.resize_linear(image, 8, 8)[..., 0]
    assert up[0, 0] == 0 and up[0, 1] == pytest.approx(0.25) and up[7, 7] == 15
