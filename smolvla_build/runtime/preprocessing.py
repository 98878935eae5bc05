"""SmolVLA's pre- and post-processing on the CPU, as LeRobot does it (../shared/docs/smolvla.md §6)."""

from __future__ import annotations

import numpy as np


def _linear_indices(n_in: int, n_out: int):
    """Source indices/weights of a linear resize with half-pixel centres (align_corners=False)."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """torch.nn.functional.interpolate(mode='bilinear', align_corners=False, antialias=False) on CHW."""
    y0, y1, wy = _linear_indices(img.shape[1], height)
    x0, x1, wx = _linear_indices(img.shape[2], width)
    rows = img[:, y0, :] * (1 - wy)[None, :, None] + img[:, y1, :] * wy[None, :, None]
    return rows[:, :, x0] * (1 - wx)[None, None, :] + rows[:, :, x1] * wx[None, None, :]


def resize_with_pad(img: np.ndarray, height: int, width: int, pad_value: float = 0.0) -> np.ndarray:
    """LeRobot's resize_with_pad: keep the aspect ratio, pad on the left and top."""
    _, h, w = img.shape
    ratio = max(w / width, h / height)
    rh, rw = int(h / ratio), int(w / ratio)
    out = np.full((img.shape[0], height, width), pad_value, dtype=np.float32)
    out[:, height - rh:, width - rw:] = resize_bilinear(img.astype(np.float32), rh, rw)
    return out


def camera_to_pixels(frame: np.ndarray, size: int = 512, flip: bool = True) -> np.ndarray:
    """uint8 HWC camera frame -> pixel_values [1,3,size,size] in [-1, 1].
    LIBERO frames are upside down (OpenGL origin): LeRobot's LiberoProcessorStep rotates them 180°."""
    if flip:
        frame = frame[::-1, ::-1]
    chw = np.ascontiguousarray(frame.transpose(2, 0, 1)).astype(np.float32) / 255.0
    return (resize_with_pad(chw, size, size) * 2.0 - 1.0)[None].astype(np.float32)


def quat2axisangle(quat_xyzw: np.ndarray) -> np.ndarray:
    """robosuite quaternion (x, y, z, w) -> axis-angle, as LeRobot/openpi do for LIBERO state."""
    q = np.asarray(quat_xyzw, dtype=np.float64).copy()
    w = np.clip(q[3], -1.0, 1.0)
    den = np.sqrt(1.0 - w * w)
    if np.isclose(den, 0.0):
        return np.zeros(3)
    return q[:3] * 2.0 * np.arccos(w) / den


def libero_state(obs: dict) -> np.ndarray:
    """8-D state: eef pos (3) + axis-angle of the eef quaternion (3) + gripper qpos (2)."""
    return np.concatenate([obs["robot0_eef_pos"], quat2axisangle(obs["robot0_eef_quat"]),
                           obs["robot0_gripper_qpos"]]).astype(np.float32)


class Tokenizer:
    """The task string + '\\n', right padded/truncated to max_length (LeRobot's processor)."""

    def __init__(self, path, max_length: int = 48):
        from tokenizers import Tokenizer as HFTokenizer
        self.tok = HFTokenizer.from_file(str(path))
        self.max_length = max_length
        pad = self.tok.padding["pad_id"] if self.tok.padding else self.tok.token_to_id("<pad>")
        self.pad_id = pad if pad is not None else 0

    def __call__(self, task: str) -> tuple[np.ndarray, np.ndarray]:
        text = task if task.endswith("\n") else task + "\n"
        ids = self.tok.encode(text).ids[: self.max_length]
        tokens = np.full((1, self.max_length), self.pad_id, dtype=np.int64)
        mask = np.zeros((1, self.max_length), dtype=np.float32)
        tokens[0, : len(ids)] = ids
        mask[0, : len(ids)] = 1.0
        return tokens, mask


class Normalizer:
    """MEAN_STD for observation.state and action (normalization.json from the export)."""

    def __init__(self, stats: dict):
        self.state_mean = np.asarray(stats["observation.state"]["mean"], np.float32)
        self.state_std = np.asarray(stats["observation.state"]["std"], np.float32)
        self.action_mean = np.asarray(stats["action"]["mean"], np.float32)
        self.action_std = np.asarray(stats["action"]["std"], np.float32)

    def state(self, state: np.ndarray, max_dim: int = 32) -> np.ndarray:
        s = (np.asarray(state, np.float32) - self.state_mean) / (self.state_std + 1e-8)
        out = np.zeros((1, max_dim), np.float32)
        out[0, : s.shape[0]] = s
        return out

    def action(self, actions: np.ndarray) -> np.ndarray:
        a = actions[..., : self.action_mean.shape[0]]
        return a * self.action_std + self.action_mean
