import pickle

import pytest

from aana.exceptions.config import MissingConfigKeyError
from aana.exceptions.core import BaseException
from aana.exceptions.db import (
    ConstraintViolationException,
    DatabaseException,
    MediaIdAlreadyExistsException,
    NotFoundException,
)


@pytest.mark.parametrize(
    "error",
    [
        NotFoundException("video", "abc"),
        MediaIdAlreadyExistsException("video", "abc"),
        DatabaseException("saving failed"),
        ConstraintViolationException("bad row", "ck_caption_frame_id_non_negative"),
        BaseException("custom", detail=1),
        MissingConfigKeyError("port", "postgresql", ("host", "port")),
    ],
)
def test_pickle__round_trip_keeps_fields(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_not_found__fields_and_status():
    error = NotFoundException("video", "abc")
    assert (error.table_name, error.id, error.http_status_code) == ("video", "abc", 404)
    assert error.get_data() == {
        "error": "NotFoundException",
        "message": "No video with id 'abc' was found.",
        "table_name": "video",
        "id": "abc",
    }


def test_media_id_already_exists__fields():
    error = MediaIdAlreadyExistsException("video", "abc")
    assert (error.table_name, error.media_id) == ("video", "abc")
    assert error.extra == {"table_name": "video", "media_id": "abc"}
