"""SmolVLA's pre- and post-processing on the CPU, as LeRobot does it (docs/smolvla.md, "Pre- and post-processing")."""

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


def camera_to_pixels(frame: np.ndarray, size: int, flip: bool = True) -> np.ndarray:
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
    """LeRobot's language processing: the task string + '\\n' (NewLineTaskProcessorStep), tokenized as
    its TokenizerProcessorStep calls the transformers tokenizer: special tokens of the tokenizer's
    post-processor added, truncated to max_length (special tokens kept), right padded with the pad
    token of tokenizer_config.json (else of tokenizer.json, else `<pad>`, else id 0). The `tokenizers`
    backend does the truncation and padding itself, as transformers' fast tokenizer does."""

    def __init__(self, path, max_length: int):
        import json
        from pathlib import Path

        from tokenizers import Tokenizer as HFTokenizer
        self.tok = HFTokenizer.from_file(str(path))
        self.max_length = max_length
        cfg = Path(path).with_name("tokenizer_config.json")
        pad_token = json.loads(cfg.read_text()).get("pad_token") if cfg.is_file() else None
        if isinstance(pad_token, dict):                  # {"content": "<|im_end|>", ...} in some configs
            pad_token = pad_token.get("content")
        if pad_token is not None and self.tok.token_to_id(pad_token) is not None:
            self.pad_id, self.pad_token = self.tok.token_to_id(pad_token), pad_token
        elif self.tok.padding:
            self.pad_id, self.pad_token = self.tok.padding["pad_id"], self.tok.padding["pad_token"]
        else:
            pad = self.tok.token_to_id("<pad>")
            self.pad_id, self.pad_token = (pad, "<pad>") if pad is not None else (0, self.tok.id_to_token(0) or "")
        self.tok.enable_truncation(max_length, direction="right")
        self.tok.enable_padding(direction="right", pad_id=self.pad_id, pad_token=self.pad_token, length=max_length)

    def __call__(self, task: str) -> tuple[np.ndarray, np.ndarray]:
        text = task if task.endswith("\n") else task + "\n"
        enc = self.tok.encode(text)
        tokens = np.asarray([enc.ids], dtype=np.int64)
        mask = np.asarray([enc.attention_mask], dtype=np.float32)
        return tokens, mask


class Normalizer:
    """MEAN_STD for observation.state and action (normalization.json from the export)."""

    def __init__(self, stats: dict):
        self.state_mean = np.asarray(stats["observation.state"]["mean"], np.float32)
        self.state_std = np.asarray(stats["observation.state"]["std"], np.float32)
        self.action_mean = np.asarray(stats["action"]["mean"], np.float32)
        self.action_std = np.asarray(stats["action"]["std"], np.float32)

    def state(self, state: np.ndarray, max_dim: int) -> np.ndarray:
        s = (np.asarray(state, np.float32) - self.state_mean) / (self.state_std + 1e-8)
        out = np.zeros((1, max_dim), np.float32)
        out[0, : s.shape[0]] = s
        return out

    def action(self, actions: np.ndarray) -> np.ndarray:
        a = actions[..., : self.action_mean.shape[0]]
        return a * self.action_std + self.action_mean
