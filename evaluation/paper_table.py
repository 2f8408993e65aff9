"""The published Table 1 that the leaderboard shows beside measured EBB! rows (:mod:`evaluation.leaderboard`)."""

from __future__ import annotations

from typing import Any

__all__ = ["PAPER_ROWS"]

# Table 1 of Ignatov, Patel, Timofte, "Rendering Natural Camera Bokeh Effect with Deep Learning" (CVPRW 2020),
# on the 200-image EBB! test subset (its targets are not public). "normalized_runtime_s" is the paper's
# runtime normalised by the ai-benchmark.com GPU index. Copied from the paper (Ignatov, Patel, Timofte, CVPRW 2020,
# Table 1; https://arxiv.org/abs/2006.05698).
PAPER_ROWS: list[dict[str, Any]] = [
    {
        "method": "PyNET",
        "hardware": "Nvidia Tesla V100",
        "runtime_s": 0.14,
        "normalized_runtime_s": 0.14,
        "psnr": 23.28,
        "ssim": 0.8780,
        "lpips": 0.2438,
        "mos": 0.85,
        "mos_rank": 1,
    },
    {
        "method": "Zheng et al.",
        "hardware": "GeForce GTX 2080 Ti",
        "runtime_s": 0.27,
        "normalized_runtime_s": 0.26,
        "psnr": 23.44,
        "ssim": 0.8874,
        "lpips": 0.2452,
        "mos": 0.87,
        "mos_rank": 2,
    },
    {
        "method": "Dutta et al.",
        "hardware": "GeForce GTX 1080 Ti",
        "runtime_s": 0.8,
        "normalized_runtime_s": 0.57,
        "psnr": 22.14,
        "ssim": 0.8633,
        "lpips": 0.2811,
        "mos": 0.88,
        "mos_rank": 3,
    },
    {
        "method": "Purohit et al.",
        "hardware": "Nvidia TITAN X",
        "runtime_s": 2.5,
        "normalized_runtime_s": 1.15,
        "psnr": 23.62,
        "ssim": 0.8836,
        "lpips": 0.2248,
        "mos": 0.93,
        "mos_rank": 4,
    },
    {
        "method": "Xiong et al.",
        "hardware": "GeForce GTX 1080 Ti",
        "runtime_s": 0.89,
        "normalized_runtime_s": 0.63,
        "psnr": 23.93,
        "ssim": 0.8917,
        "lpips": 0.2300,
        "mos": 0.98,
        "mos_rank": 5,
    },
    {
        "method": "Yang et al.",
        "hardware": "Nvidia TITAN",
        "runtime_s": 0.6,
        "normalized_runtime_s": 0.15,
        "psnr": 23.18,
        "ssim": 0.8851,
        "lpips": 0.2467,
        "mos": 1.02,
        "mos_rank": 6,
    },
]
