"""Stage C/E/F: the source's 3DMM coefficients, then audio -> per-frame expression and head pose.

    source_coefficients(recon_net, image224, trans_params) -> (73,) [exp64 | angle3 | trans3 | s tx ty]
    blink_ratio(frames, rng)                               -> (T, 1) the reference's random blinks
    expressions(expnet, windows, ref_exp, blink)           -> (T, 64) absolute expression
    head_poses(posevae, windows, ref_pose, style, torch_rng) -> (T, 6) pose, Savitzky-Golay smoothed
    predict_coefficients(...)                              -> (T, 70)

Unlike the reference (unseeded Python `random` and torch's global RNG, PITFALLS.md 7), every
random draw comes from generators seeded by the job's seed, so a seed reproduces a video.
The reference crashes for T = 21 (empty blink range) and T <= 2 (savgol); here T = 21 has no
blink and short sequences get the largest odd window that fits (none below 3 frames).
"""
from __future__ import annotations

import numpy as np
import torch

from backend.pipelines.animation.networks.audio2pose import LATENT, SEQ_LEN
from backend.pipelines.animation.networks.face_recon import COEFF_SLICES

BLINK = np.array([0.5, 0.9, 1.0, 0.9, 0.5])
SAVGOL_WINDOW = 13
SAVGOL_ORDER = 2
EXPNET_CHUNK = 32  # frames per ExpNet call: frames are independent, this only bounds activations
NUM_POSE_STYLES = 46


def source_coefficients(recon_net: torch.nn.Module, image224: np.ndarray, trans_params: np.ndarray) -> np.ndarray:
    """(73,) float32: exp 80:144, angle 224:227, trans 254:257 of the 257 outputs, then s, tx, ty."""
    with torch.inference_mode():
        tensor = torch.from_numpy(np.ascontiguousarray(image224.transpose(2, 0, 1)))[None]
        out = recon_net(tensor.to(next(recon_net.parameters()).dtype)).float()[0].numpy()
    parts = [out[slice(*COEFF_SLICES[name])] for name in ("exp", "angle", "trans")]
    return np.concatenate(parts + [trans_params[2:5].astype(np.float32)]).astype(np.float32)


def blink_ratio(frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 1): 5-frame blinks [0.5 .9 1 .9 .5] at random gaps of min(10, T)..min(T/2, 70) frames."""
    ratio = np.zeros((frames, 1), dtype=np.float32)
    low, high = min(10, frames), min(frames // 2, 70)
    if frames <= 20 or high <= low:
        return ratio
    frame = 0
    while frame < frames:
        start = int(rng.integers(low, high))
        if frame + start + 5 > frames - 1:
            break
        ratio[frame + start:frame + start + 5, 0] = BLINK
        frame += start + 5
    return ratio


def savgol(values: np.ndarray, window: int = SAVGOL_WINDOW, order: int = SAVGOL_ORDER) -> np.ndarray:
    """scipy.signal.savgol_filter(values, window, order, axis=0, mode='interp') in numpy.

    Interior points: the centre value of a local degree-`order` least-squares fit; the first and
    last window//2 points: the edge window's fit evaluated there. Windows longer than the signal
    shrink to the largest odd length (the reference does int((T-1)/2)*2+1); under order+1 points
    the values come back unchanged.
    """
    values = np.asarray(values, dtype=np.float64)
    frames = values.shape[0]
    if frames < window:
        window = (frames - 1) // 2 * 2 + 1
    if window <= order:
        return values.astype(np.float32)
    half = window // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    vander = offsets[:, None] ** np.arange(order + 1)[None, :]
    fit = np.linalg.pinv(vander)  # (order+1, window): polynomial coefficients from window samples
    out = np.empty_like(values)
    centre = fit[0]  # value at offset 0
    windows = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (frames-window+1, ..., window)
    out[half:frames - half] = np.tensordot(windows, centre, axes=([-1], [0]))
    for edge, positions in ((values[:window], offsets[:half]), (values[-window:], offsets[half + 1:])):
        coeffs = np.tensordot(fit, edge, axes=([1], [0]))  # (order+1, ...)
        evaluated = np.tensordot(positions[:, None] ** np.arange(order + 1)[None, :], coeffs, axes=([1], [0]))
        if positions[0] < 0:
            out[:half] = evaluated
        else:
            out[frames - half:] = evaluated
    return out.astype(np.float32)


def expressions(expnet: torch.nn.Module, windows: np.ndarray, ref_exp: np.ndarray, blink: np.ndarray) -> np.ndarray:
    """(T, 64) absolute expression coefficients, ExpNet over chunks of frames."""
    dtype = next(expnet.parameters()).dtype
    out = []
    with torch.inference_mode():
        for start in range(0, windows.shape[0], EXPNET_CHUNK):
            mels = torch.from_numpy(windows[start:start + EXPNET_CHUNK])[:, None].to(dtype)
            count = mels.shape[0]
            ref = torch.from_numpy(np.repeat(ref_exp[None, :64], count, 0)).to(dtype)
            ratio = torch.from_numpy(blink[start:start + count]).to(dtype)
            out.append(expnet(mels, ref, ratio).float().numpy())
    return np.concatenate(out, axis=0) if out else np.zeros((0, 64), np.float32)


def head_poses(audio2pose: torch.nn.Module, windows: np.ndarray, ref_pose: np.ndarray, style: int,
               generator: torch.Generator) -> np.ndarray:
    """(T, 6) pose = source pose + PoseVAE motion (frame 0 motion = 0), smoothed (pose only)."""
    frames = windows.shape[0]
    dtype = next(audio2pose.parameters()).dtype
    decoder = audio2pose.netG.decoder
    motions = [np.zeros((1, 6), np.float32)]
    rest = frames - 1
    chunks, remainder = divmod(rest, SEQ_LEN)
    mels = torch.from_numpy(windows[1:])[None, :, None]  # (1, T-1, 1, 80, 16)
    ref = torch.from_numpy(ref_pose[None].astype(np.float32)).to(dtype)
    style_index = torch.tensor([style])
    with torch.inference_mode():
        def decode(segment: torch.Tensor) -> np.ndarray:
            z = torch.randn(1, LATENT, generator=generator).to(dtype)  # a fresh z per chunk
            embedding = audio2pose.audio_encoder(segment.to(dtype))
            if embedding.shape[1] < SEQ_LEN:  # fewer than 32 frames: front-pad with the first row
                pad = embedding[:, :1].expand(1, SEQ_LEN - embedding.shape[1], embedding.shape[2])
                embedding = torch.cat([pad, embedding], dim=1)
            return decoder(ref, style_index, z, embedding).float()[0].numpy()

        for chunk in range(chunks):
            motions.append(decode(mels[:, chunk * SEQ_LEN:(chunk + 1) * SEQ_LEN]))
        if remainder:
            motions.append(decode(mels[:, -SEQ_LEN:])[-remainder:])
    pose = ref_pose[None].astype(np.float32) + np.concatenate(motions, axis=0)[:frames]
    return savgol(pose)


def predict_coefficients(expnet: torch.nn.Module, audio2pose: torch.nn.Module, windows: np.ndarray,
                         source: np.ndarray, style: int, seed: int) -> np.ndarray:
    """(T, 70) [exp64 | pose6] for every video frame; deterministic given the seed."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    blink = blink_ratio(windows.shape[0], rng)
    exp = expressions(expnet, windows, source[:64], blink)
    pose = head_poses(audio2pose, windows, source[64:70], style, generator)
    return np.concatenate([exp, pose], axis=1).astype(np.float32)
