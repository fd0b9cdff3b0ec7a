"""Log-mel spectrograms with torch.stft and a triangular mel filterbank (HTK mel scale).

    power = |STFT(x)|^2      Hann window of win_length, hop_length, n_fft bins, centred frames
    mel   = F @ power         F: n_mels triangles evenly spaced in mel between fmin and fmax
    out   = log(mel + 1e-6)   (n_mels, frames) per clip
"""

from __future__ import annotations

import dataclasses

import torch

from attndiff import UserError


@dataclasses.dataclass
class FeatureConfig:
    n_fft: int = 512
    win_length: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float = 0.0  # 0 = Nyquist

    def validate(self):
        if not 0 < self.win_length <= self.n_fft or self.hop_length < 1 or self.n_mels < 1 or self.fmin < 0:
            raise UserError("features: need 0 < win_length <= n_fft, hop_length >= 1, n_mels >= 1, fmin >= 0")


def hz_to_mel(f):
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float = 0.0) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, peak 1, evenly spaced on the mel scale."""
    fmax = fmax or sample_rate / 2
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise UserError(f"mel filterbank: need 0 <= fmin < fmax <= {sample_rate / 2} Hz, got {fmin}, {fmax}")
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(fmin)), float(hz_to_mel(fmax)), n_mels + 2))
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0).float()


class LogMel(torch.nn.Module):
    def __init__(self, cfg: FeatureConfig, sample_rate: int):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        self.register_buffer("filters", mel_filterbank(sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax),
                             persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """(N, T) waveforms -> (N, n_mels, frames) log-mel."""
        c = self.cfg
        spec = torch.stft(waves, c.n_fft, c.hop_length, c.win_length, self.window, center=True,
                          return_complex=True)
        power = spec.real**2 + spec.imag**2
        return torch.log(self.filters @ power + 1e-6)


@torch.no_grad()
def log_mel(waves: torch.Tensor, sample_rate: int, cfg: FeatureConfig | None = None,
            batch: int = 512) -> torch.Tensor:
    """Log-mel of many clips, in batches."""
    extractor = LogMel(cfg or FeatureConfig(), sample_rate)
    return torch.cat([extractor(waves[i:i + batch]) for i in range(0, len(waves), batch)])
