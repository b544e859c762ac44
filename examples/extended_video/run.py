"""Save a video with a duration, then update and read its status and metadata.

Run from ``examples/`` after ``aana migrate extended_video.app:aana_app``::

    python -m extended_video.run
"""

from aana.core.models import Video
from aana.storage.session import get_session
from extended_video.app import ExtendedVideoRepository, VideoProcessingStatus, aana_app

aana_app.migrate()  # a no-op when `aana migrate` already ran

with get_session() as session:
    # The documentation page's example, verbatim:
    video = Video(title="My Video", url="https://example.com/video.mp4")
    duration = 42
    video_repository = ExtendedVideoRepository(session)
    video_repository.save(video, duration)

    print("status:", video_repository.get_status(video.media_id).value)
    video_repository.update_status(video.media_id, VideoProcessingStatus.COMPLETED)
    print("status:", video_repository.get_status(video.media_id).value)
    print("metadata:", video_repository.get_metadata(video.media_id).model_dump_json())
