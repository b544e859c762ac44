import pytest

from aana.storage.models import CaptionEntity


def test_save__one_caption(api, session):
    entity = api.CaptionRepository(session).save("blip", "a cat", timestamp=1.5, frame_id=3)
    session.expunge_all()
    stored = api.CaptionRepository(session).read(entity.id)
    assert (stored.model, stored.caption, stored.timestamp, stored.frame_id) == (
        "blip",
        "a cat",
        1.5,
        3,
    )
    assert stored.caption_type == "caption"


def test_save_all__returns_persistent_entities_in_order(api, session):
    captions = [f"caption {i}" for i in range(50)]
    entities = api.CaptionRepository(session).save_all(
        "blip", captions, timestamps=[i / 10 for i in range(50)], frame_ids=list(range(50))
    )
    assert [e.caption for e in entities] == captions
    assert len({e.id for e in entities}) == 50
    assert entities[7].frame_id == 7 and entities[7].timestamp == pytest.approx(0.7)
    assert entities[0].created_at.tzinfo is not None
    assert session.get(CaptionEntity, entities[3].id) is entities[3]
    session.expunge_all()
    assert api.CaptionRepository(session).read(entities[9].id).caption == "caption 9"


def test_save_all__empty_is_fine(api, session):
    assert api.CaptionRepository(session).save_all("blip", [], [], []) == []


def test_save_all__lengths_differ__nothing_written(api, session):
    repository = api.CaptionRepository(session)
    with pytest.raises(ValueError, match="must have the same length"):
        repository.save_all("blip", ["a", "b"], timestamps=[0.0], frame_ids=[0, 1])
    assert repository.count_all() == 0


@pytest.mark.parametrize(
    ("frame_ids", "timestamps"), [([0, -1], [0.0, 1.0]), ([0, 1], [0.0, -2.0])]
)
def test_save_all__negative_frame_or_time__nothing_written(api, session, frame_ids, timestamps):
    repository = api.CaptionRepository(session)
    with pytest.raises(ValueError, match="must be >= 0"):
        repository.save_all("blip", ["a", "b"], timestamps=timestamps, frame_ids=frame_ids)
    assert repository.count_all() == 0


def test_save__negative_frame_id_rejected(api, session):
    with pytest.raises(ValueError, match="frame_id must be >= 0"):
        api.CaptionRepository(session).save("blip", "x", timestamp=0.0, frame_id=-1)
    assert api.CaptionRepository(session).count_all() == 0
