"""Notification ids: the hot path's own uuid4 must be exactly what str(uuid.uuid4()) would give."""
import uuid

from notisync.core.notifications import new_id


def test_new_id_is_a_canonical_random_uuid4() -> None:
    ids = [new_id() for _ in range(20000)]
    for s in ids:
        u = uuid.UUID(s)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == s
    assert len(set(ids)) == len(ids)
    # Every other bit varies (none stuck by the masking).
    varied = 0
    for s in ids[:200]:
        varied |= int(s.replace("-", ""), 16) ^ int(ids[0].replace("-", ""), 16)
    assert varied == ((1 << 128) - 1) & ~(0xF000 << 64) & ~(0xC000 << 48)
