"""Rainy video in, clean video out: PyAV decoding and encoding, frame folders, temporal fusion.

Needs the ``video`` extra (``pip install "derain[video]"``: PyAV and OpenCV).
"""

from .api import VideoResult, derain_video
from .io import TruncatedVideoError, VideoError, VideoInfo, VideoReader, open_writer
from .temporal import TemporalFusion

__all__ = ["TemporalFusion", "TruncatedVideoError", "VideoError", "VideoInfo", "VideoReader", "VideoResult", "derain_video", "open_writer"]
