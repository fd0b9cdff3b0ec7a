import math

import numpy as np
import torch

from attndiff.audio.features import FeatureConfig, LogMel, hz_to_mel, mel_filterbank, mel_to_hz


def test_mel_scale_round_trips_and_filters_tile_the_band():
    f = torch.tensor([0.0, 440.0, 1000.0, 8000.0], dtype=torch.float64)
    assert torch.allclose(mel_to_hz(hz_to_mel(f)), f)
    assert abs(float(hz_to_mel(1000.0)) - 1000.0) < 0.1  # the HTK scale puts 1 kHz at about 1000 mel
    fb = mel_filterbank(16000, 512, 40, 20.0, 8000.0)
    assert fb.shape == (40, 257) and fb.max() <= 1.0 and (fb >= 0).all()
    freqs = torch.linspace(0, 8000, 257)
    inside = (freqs > 60) & (freqs < 7800)
    assert (fb.sum(0)[inside] > 0).all()  # every bin in the band is covered


def test_log_mel_of_a_tone_matches_a_direct_computation():
    sr, cfg = 16000, FeatureConfig(n_fft=512, win_length=400, hop_length=160, n_mels=64)
    t = torch.arange(sr) / sr
    tone = 0.5 * torch.sin(2 * math.pi * 1000 * t)
    out = LogMel(cfg, sr)(tone[None])[0]
    assert out.shape == (64, 101)
    # frame 50 directly: Hann-windowed 400 samples centred at sample 8000, zero-padded to 512, |DFT|^2
    window = torch.hann_window(400).numpy()
    start = 50 * 160 - 200  # frame 50 is centred on sample 8000; the 400-window sits in the middle of 512
    frame = np.zeros(512)
    frame[56:456] = tone.numpy()[start:start + 400] * window
    power = np.abs(np.fft.rfft(frame)) ** 2
    expected = np.log(mel_filterbank(sr, 512, 64, fmin=20.0).double().numpy() @ power + 1e-6)
    loud = expected > expected.max() - 7  # within 30 dB of the peak (below that: fp32 round-off of the floor)
    assert loud.sum() >= 3
    assert np.allclose(out[:, 50].double().numpy()[loud], expected[loud], atol=1e-3)
    peak_band = int(out[:, 50].argmax())
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(20.0)), float(hz_to_mel(8000.0)), 66))
    assert edges[peak_band] < 1000 < edges[peak_band + 2]  # the loudest band holds 1 kHz
