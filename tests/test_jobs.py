import json

from queuestorm.jobs import JobEncoder, decode


def test_encoded_job_is_json_any_consumer_can_read_and_decodes_to_its_identity():
    body = JobEncoder("run-1", 7, 100).encode(42, now=1700000000.5)
    doc = json.loads(body)
    assert doc["run"] == "run-1" and doc["producer"] == 7 and doc["seq"] == 42
    assert len(doc["payload"]) == 100
    ref = decode(body)
    assert ref == ("run-1", 7, 42, 1700000000.5)
    assert ref.job_id == "7-42"


def test_foreign_bodies_are_recognised_not_crashed_on():
    assert decode(b"uuid-1234 1700000000") is None
    assert decode(b'{"qs":1,"run":"x"}') is None
    assert decode(b'{"qs": broken') is None
    assert decode(b"") is None


def test_other_json_writings_of_a_job_decode_the_same_as_the_encoders_own():
    body = JobEncoder("run.2_x", 12, 30).encode(98765, now=1700000123.25)
    doc = json.loads(body)
    for other in (json.dumps(doc).encode(), body.replace(b'"x', b'"y', 1), body.replace(b"}", b', "extra": 1}')):
        assert other != body and decode(other) == decode(body) == ("run.2_x", 12, 98765, 1700000123.25)


def test_a_truncated_job_is_foreign_not_half_read():
    body = JobEncoder("run-1", 7, 100).encode(42)
    assert decode(body[:-1]) is None
    assert decode(body[:60]) is None
