import pytest
from sqlalchemy import insert

from aana.core.models import (
    AsrSegment,
    AsrTranscription,
    AsrTranscriptionInfo,
    AsrWord,
    TimeInterval,
)
from aana.exceptions.db import ConstraintViolationException
from aana.storage.errors import translate_errors
from aana.storage.models import TranscriptEntity


def segments():
    return [
        AsrSegment(
            text="hello world",
            time_interval=TimeInterval(start=0.0, end=1.5),
            confidence=0.9,
            words=[AsrWord(word="hello", time_interval=TimeInterval(start=0, end=0.7))],
            speaker="A",
        ),
        AsrSegment(text="bye", time_interval=TimeInterval(start=1.5, end=2.0)),
    ]


def test_save__stores_text_segments_and_language(api, session):
    entity = api.TranscriptRepository(session).save(
        model_name="whisper",
        transcription_info=AsrTranscriptionInfo(language="en", language_confidence=0.98),
        transcription=AsrTranscription(text="hello world bye"),
        segments=segments(),
    )
    session.expunge_all()
    stored = api.TranscriptRepository(session).read(entity.id)
    assert (stored.model, stored.transcript, stored.language) == (
        "whisper",
        "hello world bye",
        "en",
    )
    assert stored.language_confidence == pytest.approx(0.98)
    assert stored.transcript_type == "transcript"
    assert [AsrSegment.model_validate(s) for s in stored.segments] == segments()


def test_language_confidence_outside_0_1__rejected_nothing_written(api, session):
    with pytest.raises(ValueError, match="between 0 and 1"):
        TranscriptEntity(model="m", language_confidence=1.2)
    with pytest.raises(ValueError):
        AsrTranscriptionInfo(language="en", language_confidence=-0.1)
    assert api.TranscriptRepository(session).count_all() == 0


def test_language_confidence__database_check_backs_up_the_model(api, session):
    table = TranscriptEntity.__table__
    row = {
        "model": "m",
        "transcript": "",
        "segments": [],
        "language": "en",
        "language_confidence": 3.0,
        "transcript_type": "transcript",
    }
    with pytest.raises(ConstraintViolationException), translate_errors("inserting"):
        session.execute(insert(table).values(row))
    session.rollback()
    assert api.TranscriptRepository(session).count_all() == 0


def test_from_asr_output__builds_an_unsaved_entity():
    entity = TranscriptEntity.from_asr_output(
        "m", AsrTranscriptionInfo(), AsrTranscription(text="x"), []
    )
    assert (entity.model, entity.transcript, entity.segments, entity.id) == ("m", "x", [], None)
