"""Video in and out through PyAV (FFmpeg's libraries from PyPI wheels), and PNG-sequence folders.

Frames stream one at a time, so memory does not depend on the length of a video. What a video
editor checks is kept: every frame's timestamp (``pts`` in the input's ``time_base``, variable
frame rate included), the size, the sample aspect ratio, the rotation (display matrix), the colour
range and matrix; audio packets are copied as they are (remuxed, never re-encoded).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from .. import imageio
from ..data.pairing import IMAGE_SUFFIXES
from ..files import atomic_write
from ..imageio import ImageReadError, write_image

# FFmpeg picks a muxer by the file's suffix; the temporary name of an atomic write has another
# suffix, so the muxer is named explicitly.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
DEFAULT_CODEC = "libx264"
DEFAULT_CRF = 16  # x264's scale: 0 lossless, 18 about visually lossless, 23 its default
DEFAULT_FPS = Fraction(25)  # frame folders carry no timestamps
_CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1"}


class VideoError(ValueError):
    """A video or frame folder that cannot be read or written; the message names the file."""


class TruncatedVideoError(VideoError):
    """The input broke off: ``frames_done`` frames decoded before the one that failed."""

    def __init__(self, message: str, frames_done: int):
        super().__init__(message)
        self.frames_done = frames_done


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB uint8 (H, W, 3), its timestamp, and a name for frame folders."""

    image: np.ndarray
    pts: int
    time_base: Fraction
    name: str


@dataclass(frozen=True)
class VideoInfo:
    """The facts of the input's video stream that the output keeps."""

    width: int
    height: int
    frames: int | None  # as the container declares it; None when unknown
    rate: Fraction
    time_base: Fraction
    pix_fmt: str | None = None
    sample_aspect_ratio: Fraction | None = None
    rotation: int = 0
    color_range: int = 0
    colorspace: int = 2  # unspecified
    color_primaries: int = 2
    color_trc: int = 2
    seconds: Fraction | None = None  # the duration the container declares

    def expected_frames(self) -> int | None:
        """The declared frame count, else one estimated from the duration (for progress bars)."""
        if self.frames:
            return self.frames
        return round(self.seconds * self.rate) if self.seconds else None


def frame_name(index: int) -> str:
    """The file stem of frame ``index`` (from 0) where the source gives no name: frame_000001..."""
    return f"frame_{index + 1:06d}"


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3): gray repeated, alpha dropped, 16 bits rounded."""
    try:
        return imageio.read_rgb8(path)
    except ImageReadError as err:
        raise VideoError(str(err)) from None


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() or (not path.exists() and path.suffix == "")


class VideoReader:
    """Frames of a video file or a folder of images (sorted by name), decoded one at a time.

    Use as a context manager. ``audio`` lists the input's audio streams; pass ``on_audio`` to
    :meth:`frames` to receive their packets in file order while the frames are decoded.
    """

    def __init__(self, path: str | os.PathLike, *, fps: Fraction = DEFAULT_FPS):
        self.path = Path(path)
        self.audio: list[av.audio.stream.AudioStream] = []
        self._container = None
        if self.path.is_dir():
            self._files = sorted(
                p for p in self.path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
            )
            if not self._files:
                raise VideoError(f"{self.path}: a folder without images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            first = read_rgb8(self._files[0])
            rate = Fraction(fps)
            self.info = VideoInfo(first.shape[1], first.shape[0], len(self._files), rate, 1 / rate)
            return
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such file or folder")
        self._open()
        try:
            self.info = self._probe()
        finally:
            self._container.close()
        self._open()  # from the start again: seeking back is not possible in every stream

    def _open(self) -> None:
        try:
            self._container = av.open(str(self.path))
        except av.FFmpegError as err:
            raise VideoError(f"{self.path}: not a video FFmpeg can read ({_reason(err)})") from None
        if not self._container.streams.video:
            kinds = ", ".join(f"{s.type} {s.codec_context.name}" for s in self._container.streams) or "none"
            self._container.close()
            raise VideoError(f"{self.path}: no video stream (streams: {kinds})")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.audio = list(self._container.streams.audio)

    def _probe(self) -> VideoInfo:
        """The stream's facts; rotation and colour are read from the first frame, where FFmpeg puts them."""
        stream, context = self._stream, self._stream.codec_context
        try:
            first = next(self._container.decode(stream))
        except (StopIteration, av.FFmpegError) as err:
            reason = "it holds no decodable frame" if isinstance(err, StopIteration) else _reason(err)
            raise VideoError(f"{self.path}: the video stream cannot be decoded ({reason})") from None
        rate = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
        return VideoInfo(
            width=context.width,
            height=context.height,
            frames=stream.frames or None,
            rate=Fraction(rate),
            time_base=Fraction(stream.time_base),
            pix_fmt=context.pix_fmt,
            sample_aspect_ratio=Fraction(context.sample_aspect_ratio) if context.sample_aspect_ratio else None,
            rotation=int(round(first.rotation)),
            color_range=int(first.color_range),
            colorspace=int(first.colorspace),
            color_primaries=int(first.color_primaries),
            color_trc=int(first.color_trc),
            seconds=_duration(stream, self._container),
        )


    def frames(self, on_audio: Callable[[av.Packet], None] | None = None) -> Iterator[Frame]:
        """Yield every frame in presentation order.

        Raises:
            TruncatedVideoError: after the frames that decoded, when the file breaks off or a
                packet cannot be read; the message names the frame.
        """
        if self._container is None:
            yield from self._folder_frames()
            return
        streams = [self._stream] + (self.audio if on_audio else [])
        time_base = self.info.time_base
        index = 0
        try:
            for packet in self._container.demux(*streams):
                if packet.stream.type == "audio":
                    if packet.size:
                        on_audio(packet)
                    continue
                for decoded in packet.decode():
                    pts = decoded.pts if decoded.pts is not None else round(index / self.info.rate / time_base)
                    image = decoded.to_ndarray(format="rgb24", src_color_range=decoded.color_range, dst_color_range="JPEG")
                    yield Frame(image, pts, time_base, frame_name(index))
                    index += 1
        except av.FFmpegError as err:
            raise TruncatedVideoError(
                f"{self.path}: broke off at frame {index + 1} ({_reason(err)}); {index} frame(s) decoded before it",
                index,
            ) from None
        if self.info.frames and index < self.info.frames:
            raise TruncatedVideoError(
                f"{self.path}: truncated: frame {index + 1} of the {self.info.frames} it declares is missing; "
                f"{index} frame(s) decoded before it",
                index,
            )

    def _folder_frames(self) -> Iterator[Frame]:
        ticks = 0
        for path in self._files:
            image = read_rgb8(path)
            if image.shape[:2] != (self.info.height, self.info.width):
                raise VideoError(
                    f"{path}: {image.shape[1]}x{image.shape[0]}, but the sequence's first frame "
                    f"{self._files[0].name} is {self.info.width}x{self.info.height}"
                )
            yield Frame(image, ticks, self.info.time_base, path.stem)
            ticks += 1

    def close(self) -> None:
        if self._container is not None:
            self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Write frames to a video file (encoded) or a folder (PNG); use :func:`open_writer`."""

    def __init__(self, tmp: Path, target: Path, info: VideoInfo, audio: list, *, codec: str, crf: int | None):
        self.target = target
        self._folder = tmp if is_frame_folder(target) else None
        self._audio = {}
        if self._folder is not None:
            self._folder.mkdir()
            return
        try:
            encoder = av.Codec(codec, "w")
        except av.codec.codec.UnknownCodecError:
            encoders = sorted(name for name in av.codecs_available if _is_video_encoder(name))
            raise VideoError(
                f"{target}: the video encoder {codec!r} is not in the installed FFmpeg "
                f"(PyAV {av.__version__}); video encoders there: {', '.join(encoders)}"
            ) from None
        self._container = av.open(str(tmp), "w", format=CONTAINERS[target.suffix.lower()])
        try:
            if encoder.name not in self._container.supported_codecs:
                raise VideoError(f"{target}: a {target.suffix} file cannot hold {encoder.name!r} video; choose another --codec or suffix")
            for stream in audio:
                name = stream.codec_context.name
                if name not in self._container.supported_codecs:
                    raise VideoError(
                        f"{target}: the audio codec {name!r} (stream #{stream.index}) cannot be stored in a "
                        f"{target.suffix} file; choose another suffix, e.g. .mkv, or remove the audio"
                    )
                self._audio[stream.index] = self._container.add_stream_from_template(stream)
            self._video = self._add_video_stream(encoder, info, crf)
        except BaseException:
            self._container.close()
            raise

    def _add_video_stream(self, encoder: av.Codec, info: VideoInfo, crf: int | None):
        stream = self._container.add_stream(encoder.name, rate=info.rate)
        stream.width, stream.height = info.width, info.height
        # The encoder counts in the input's time base too: in 1/rate, variable frame rates
        # would round two timestamps onto one tick.
        stream.time_base = stream.codec_context.time_base = info.time_base
        stream.pix_fmt = _pixel_format(encoder, info)
        if crf is not None and encoder.name in _CRF_CODECS:
            stream.options = {"crf": str(crf)}
        context = stream.codec_context
        if info.sample_aspect_ratio:
            context.sample_aspect_ratio = info.sample_aspect_ratio
        context.color_range, context.colorspace = info.color_range, info.colorspace
        context.color_primaries, context.color_trc = info.color_primaries, info.color_trc
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        self._info = info
        return stream

    def write(self, image: np.ndarray, frame: Frame) -> None:
        """Write ``image`` (RGB uint8) in place of ``frame``, with its timestamp or name."""
        if self._folder is not None:
            write_image(self._folder / f"{frame.name}.png", image)
            return
        out = av.VideoFrame.from_ndarray(image, format="rgb24")
        out = out.reformat(
            format=self._video.pix_fmt,
            dst_colorspace=self._info.colorspace,
            src_color_range="JPEG",
            dst_color_range=self._info.color_range,
        )
        out.pts, out.time_base = frame.pts, frame.time_base
        self._encode(out)

    def mux_audio(self, packet: av.Packet) -> None:
        """Copy an input audio packet; a frame folder has no place for audio and drops it."""
        if self._folder is not None:
            return
        packet.stream = self._audio[packet.stream.index]
        self._mux([packet])

    def finish(self) -> None:
        if self._folder is None:
            self._encode(None)
            self._container.close()

    def abandon(self) -> None:
        if self._folder is None:
            self._container.close()

    def _encode(self, frame: av.VideoFrame | None) -> None:
        """Encode ``frame`` (``None``: flush the encoder) and mux its packets."""
        try:
            packets = self._video.encode(frame)
        except av.FFmpegError as err:
            raise VideoError(
                f"{self.target}: the encoder {self._video.codec_context.name!r} refused the frames "
                f"({self._info.width}x{self._info.height} {self._video.pix_fmt}): {_reason(err)}"
            ) from None
        self._mux(packets)

    def _mux(self, packets) -> None:
        try:
            self._container.mux(packets)
        except av.FFmpegError as err:
            raise VideoError(f"{self.target}: FFmpeg could not write the file ({_reason(err)})") from None


@contextmanager
def open_writer(
    target: str | os.PathLike,
    info: VideoInfo,
    audio: list = (),
    *,
    codec: str = DEFAULT_CODEC,
    crf: int | None = DEFAULT_CRF,
    overwrite: bool = False,
) -> Iterator[VideoWriter]:
    """A writer to a temporary name beside ``target``, renamed to ``target`` when the block ends
    without an exception; otherwise nothing is left. A path without suffix is a frame folder."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise VideoError(f"{target}: exists; pass --overwrite (overwrite=True) to replace it")
    folder = is_frame_folder(target)
    if not folder and target.suffix.lower() not in CONTAINERS:
        raise VideoError(
            f"{target}: unknown video suffix {target.suffix!r}; use one of {', '.join(CONTAINERS)}, "
            "or a path without suffix for a folder of PNG frames"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            writer = VideoWriter(tmp, target, info, [], codec=codec, crf=crf)
            yield writer
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            tmp.replace(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    with atomic_write(target) as tmp:
        writer = VideoWriter(tmp, target, info, audio, codec=codec, crf=crf)
        try:
            yield writer
        except BaseException:
            writer.abandon()
            raise
        writer.finish()


def _pixel_format(encoder: av.Codec, info: VideoInfo) -> str:
    """The input's pixel format where the encoder takes it, else 4:2:0; 4:4:4 for odd sizes,
    which chroma subsampling cannot halve (frame folders have any size)."""
    supported = {f.name for f in encoder.video_formats or ()}
    odd = info.width % 2 or info.height % 2
    wanted = (info.pix_fmt or "yuv420p").replace("yuvj", "yuv")  # yuvj: full range, now a flag
    if odd and any(sub in wanted for sub in ("420", "422", "411", "410", "nv")):
        wanted = "yuv444p"
    for candidate in (wanted, "yuv420p", "yuv444p", "rgb24"):
        if candidate in supported or not supported:
            return candidate
    return sorted(supported)[0]


def _is_video_encoder(name: str) -> bool:
    try:
        return av.Codec(name, "w").type == "video"
    except av.codec.codec.UnknownCodecError:
        return False


def _duration(stream, container) -> Fraction | None:
    if stream.duration:
        return stream.duration * Fraction(stream.time_base)
    return Fraction(container.duration, av.time_base) if container.duration else None


def _reason(err: av.FFmpegError) -> str:
    return err.strerror or str(err)
