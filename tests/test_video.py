"""``derain video`` and ``derain.video``: what a video editor checks survives, and bad input fails clearly."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from derain.cli import video as video_command  # noqa: E402
from derain.imageio import write_image  # noqa: E402
from derain.video import TruncatedVideoError, VideoError, VideoReader, derain_video  # noqa: E402
from test_pretrained import install_tiny_pretrained  # noqa: E402

CLIP = Path(__file__).parent.parent / "src/derain/demo/examples/chelsea_rain.mp4"


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="derain")
    video_command.register(parser.add_subparsers())
    args = parser.parse_args(["video", *argv])
    return args.func(args)


def unchanged(image: np.ndarray) -> np.ndarray:
    return image


def make_clip(path: Path, pts: list[int], time_base: Fraction, *, size=(48, 32), audio: str | None = None, sar=None, rotation=0, full_range=False) -> None:
    """A small noisy H.264 clip with the given frame timestamps and, optionally, a second of audio."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(1) / time_base / max(pts[1] - pts[0], 1))
        video.width, video.height, video.pix_fmt = *size, "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        if sar:
            video.codec_context.sample_aspect_ratio = sar
        if full_range:
            video.codec_context.color_range = 2
        if rotation:
            video.set_display_rotation(rotation)
        sound = container.add_stream(audio, rate=8000, layout="mono") if audio else None
        for stamp in pts:
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_color_range=2 if full_range else 1)
            frame.pts, frame.time_base = stamp, time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound:
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
            samples.sample_rate, samples.pts = 8000, 0
            container.mux(sound.encode(samples))
            container.mux(sound.encode(None))


def timestamps(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [frame.pts * stream.time_base for frame in container.decode(stream)]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(*container.streams.audio) if packet.size]


def test_bundled_clip_keeps_frames_timestamps_and_audio(tmp_path, capsys):
    """The issue's acceptance test, with the shipped model."""
    out = tmp_path / "clean.mp4"
    assert cli([str(CLIP), "-o", str(out)]) == 0
    assert "24 frame(s)" in capsys.readouterr().err
    assert timestamps(out) == timestamps(CLIP) and len(timestamps(out)) == 24
    assert audio_packets(out) == audio_packets(CLIP) and audio_packets(CLIP)
    with VideoReader(out) as result, VideoReader(CLIP) as source:
        assert (result.info.width, result.info.height) == (source.info.width, source.info.height)
    assert [p.name for p in tmp_path.iterdir()] == ["clean.mp4"]  # no temporary file left


def test_variable_frame_rate_kept(tmp_path):
    source = tmp_path / "vfr.mkv"
    make_clip(source, [0, 40, 120, 130, 300, 310, 311, 500], Fraction(1, 1000), audio="pcm_s16le")
    out = tmp_path / "out.mkv"
    result = derain_video(source, out, unchanged, progress=False)
    assert result.frames == 8
    assert timestamps(out) == timestamps(source)
    assert audio_packets(out) == audio_packets(source)


def test_aspect_rotation_and_colour_range_kept(tmp_path):
    source = tmp_path / "phone.mp4"
    make_clip(source, list(range(6)), Fraction(1, 30), sar=Fraction(4, 3), rotation=90, full_range=True)
    out = tmp_path / "out.mov"
    derain_video(source, out, unchanged, progress=False)
    with VideoReader(out) as result:
        assert result.info.sample_aspect_ratio == Fraction(4, 3)
        assert result.info.rotation == 90
        assert result.info.color_range == 2  # full ("JPEG") range


def test_frame_folder_round_trip(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(5)]
    for index, frame in enumerate(frames):
        write_image(folder / f"seq_{index:03d}.png", frame)
    derain_video(folder, tmp_path / "copy", unchanged, progress=False)
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == [f"seq_{i:03d}.png" for i in range(5)]
    derain_video(folder, tmp_path / "clip.mp4", unchanged, fps=Fraction(10), progress=False)
    assert timestamps(tmp_path / "clip.mp4") == [Fraction(i, 10) for i in range(5)]
    assert derain_video(tmp_path / "clip.mp4", tmp_path / "back", unchanged, progress=False).audio_dropped == 0
    assert derain_video(CLIP, tmp_path / "bundled", unchanged, progress=False).audio_dropped == 1
    assert len(list((tmp_path / "back").iterdir())) == 5
    with VideoReader(tmp_path / "copy") as reader:
        for decoded, original in zip(reader.frames(), frames):
            np.testing.assert_array_equal(decoded.image, original)


def test_odd_sized_frames_encode_without_chroma_subsampling(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    for index in range(3):
        write_image(folder / f"{index}.png", np.full((21, 31, 3), 40 * index, np.uint8))
    derain_video(folder, tmp_path / "odd.mp4", unchanged, progress=False)
    with VideoReader(tmp_path / "odd.mp4") as reader:
        assert (reader.info.width, reader.info.height, reader.info.pix_fmt) == (31, 21, "yuv444p")


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    install_tiny_pretrained(tmp_path / "pretrained", monkeypatch)


def run_bad(argv: list[str], capsys) -> tuple[int, str]:
    code = cli(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_not_a_video(tmp_path, capsys, tiny_model):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    code, err = run_bad([str(text), "-o", str(tmp_path / "out.mp4")], capsys)
    assert code == 1 and f"{text}: not a video" in err
    assert not (tmp_path / "out.mp4").exists()


def test_no_video_stream(tmp_path, capsys, tiny_model):
    sound = tmp_path / "tone.wav"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        samples.sample_rate, samples.pts = 8000, 0
        container.mux(stream.encode(samples))
    code, err = run_bad([str(sound), "-o", str(tmp_path / "out.mp4")], capsys)
    assert code == 1 and f"{sound}: no video stream (streams: audio pcm_s16le)" in err


def test_truncated_file_names_the_frame_and_leaves_no_output(tmp_path, capsys, tiny_model):
    cut = tmp_path / "cut.mp4"
    data = CLIP.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "out.mp4"
    code, err = run_bad([str(cut), "-o", str(out)], capsys)
    assert code == 1
    # FFmpeg builds differ: the demuxer ends early, or a packet read fails; both name the frame.
    assert re.search(rf"{re.escape(str(cut))}: (truncated: frame \d+ of the 24 it declares is missing|broke off at frame \d+)", err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4", "pretrained"]


def test_truncated_error_counts_the_frames_done(tmp_path):
    cut = tmp_path / "cut.mp4"
    data = CLIP.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    seen = []
    with pytest.raises(TruncatedVideoError) as raised:
        derain_video(cut, tmp_path / "out.mp4", lambda image: seen.append(image) or image, progress=False)
    assert 0 < raised.value.frames_done == len(seen) < 24


def test_audio_codec_the_container_cannot_hold(tmp_path, capsys, tiny_model):
    source = tmp_path / "phone.mov"
    make_clip(source, list(range(4)), Fraction(1, 25), audio="pcm_mulaw")
    code, err = run_bad([str(source), "-o", str(tmp_path / "out.mp4")], capsys)
    assert code == 1 and "the audio codec 'pcm_mulaw' (stream #1) cannot be stored in a .mp4 file" in err
    assert not (tmp_path / "out.mp4").exists()


def test_encoder_missing_from_ffmpeg(tmp_path, capsys, tiny_model):
    code, err = run_bad([str(CLIP), "-o", str(tmp_path / "out.mp4"), "--codec", "h264_imaginary"], capsys)
    assert code == 1 and "'h264_imaginary' is not in the installed FFmpeg" in err and "libx264" in err


def test_existing_output_needs_overwrite(tmp_path, capsys, tiny_model):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    code, err = run_bad([str(CLIP), "-o", str(out)], capsys)
    assert code == 2 and f"{out}: exists; pass --overwrite" in err
    assert out.read_bytes() == b"keep me"
    with pytest.raises(VideoError, match="exists"):
        derain_video(CLIP, out, unchanged, progress=False)


def test_interrupted_run_leaves_nothing(tmp_path):
    for target in ("out.mp4", "frames"):
        frames = iter(range(5))

        def interrupted(image):
            if next(frames, None) is None:
                raise KeyboardInterrupt
            return image

        with pytest.raises(KeyboardInterrupt):
            derain_video(CLIP, tmp_path / target, interrupted, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unknown_suffix_and_bad_temporal_window(tmp_path, capsys, tiny_model):
    code, err = run_bad([str(CLIP), "-o", str(tmp_path / "out.xyz")], capsys)
    assert code == 1 and "out.xyz: unknown video suffix '.xyz'" in err
    code, err = run_bad([str(CLIP), "-o", str(tmp_path / "out.mp4"), "--temporal", "-1"], capsys)
    assert code == 1 and "temporal must be >= 0 (0: off), got -1" in err


def test_memory_does_not_grow_with_length(tmp_path):
    """Peak RSS of a fresh process for 30 and 300 frames of 320x240: keeping the frames would
    add 66 MiB."""
    script = (
        "import resource, sys; from derain.video import derain_video; "
        "derain_video(sys.argv[1], sys.argv[2], lambda image: image, progress=False); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    peaks = []
    for frames in (30, 300):
        source = tmp_path / f"clip{frames}.mp4"
        make_clip(source, list(range(frames)), Fraction(1, 25), size=(320, 240))
        done = subprocess.run([sys.executable, "-c", script, str(source), str(tmp_path / f"out{frames}.mp4")],
                              capture_output=True, text=True, check=True)
        peaks.append(int(done.stdout.split()[-1]) / 1024)
    assert peaks[1] < peaks[0] + 30, f"peak RSS {peaks[0]:.0f} MiB for 30 frames, {peaks[1]:.0f} MiB for 300"
