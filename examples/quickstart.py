"""The main job: migrate the configured database, save media and model outputs, read back.

    python examples/quickstart.py

Uses the database of ``DB_CONFIG`` (default: SQLite at /var/lib/aana_data).
"""

from aana import AanaSDK
from aana.core.models import (
    AsrSegment,
    AsrTranscription,
    AsrTranscriptionInfo,
    TimeInterval,
    Video,
)
from aana.storage.repository import (
    CaptionRepository,
    TaskRepository,
    TranscriptRepository,
    VideoRepository,
)
from aana.storage.session import get_session


def main() -> None:
    AanaSDK(name="quickstart").migrate()
    with get_session() as session:
        video = Video(title="My Video", url="https://example.com/video.mp4")
        media_id = VideoRepository(session).save(video)["media_id"]

        transcript = TranscriptRepository(session).save(
            model_name="whisper-tiny",
            transcription_info=AsrTranscriptionInfo(language="en", language_confidence=0.97),
            transcription=AsrTranscription(text="Welcome to the demo. Let us begin."),
            segments=[
                AsrSegment(
                    text="Welcome to the demo.", time_interval=TimeInterval(start=0, end=1.2)
                ),
                AsrSegment(text="Let us begin.", time_interval=TimeInterval(start=1.4, end=2.9)),
            ],
        )
        captions = CaptionRepository(session).save_all(
            model_name="blip2",
            captions=["a person at a desk", "a laptop screen", "a cup of coffee"],
            timestamps=[0.0, 1.0, 2.0],
            frame_ids=[0, 30, 60],
        )
        task = TaskRepository(session).save("caption_video", {"media_id": media_id}, user_id="demo")

    with get_session() as session:
        metadata = VideoRepository(session).get_metadata(media_id)
        stored = TranscriptRepository(session).read(transcript.id)
        claimed = TaskRepository(session).fetch_unprocessed_tasks(limit=1)
        counts = TaskRepository(session).count(user_id="demo")

    print(f"video      {media_id}: {metadata.title!r} ({video.url})")
    print(
        f"transcript #{stored.id}: {stored.language} {stored.transcript!r}, "
        f"{len(stored.segments)} segments"
    )
    print(f"captions   {len(captions)}: " + "; ".join(c.caption for c in captions))
    print(
        f"task       {task.id}: claimed={[str(t.id) for t in claimed] == [str(task.id)]}, "
        f"tasks of user demo by status: " + ", ".join(f"{k}={v}" for k, v in counts.items() if v)
    )


if __name__ == "__main__":
    main()
