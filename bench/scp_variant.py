"""`dicomflow scp` with part of its C-STORE path replaced by a no-op, to measure the rest.

    python bench/scp_variant.py {whole|no-event|nothing}

`whole` is the real SCP; `no-event` parses, validates, writes and fsyncs but publishes
nothing; `nothing` answers success without storing (pynetdicom's own cycle and the handler's
call). For `scp_alone.py`; never a way to run an archive.
"""

import sys

from dicomflow.cli import main
from dicomflow.ingest.publisher import EventPublisher
from dicomflow.ingest.store import InstanceStore

VARIANTS = ("whole", "no-event", "nothing")


class NotPublished:
    """Stands for a `Publication` that is durable at once."""

    def wait(self) -> None:
        pass


def replace_part(variant: str) -> None:
    if variant == "no-event":
        EventPublisher.publish = lambda self, topic, key, value: NotPublished()  # type: ignore[method-assign]
    elif variant == "nothing":
        InstanceStore.store = lambda self, *args, **kwargs: None  # type: ignore[method-assign]


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: scp_variant.py {{{'|'.join(VARIANTS)}}}")
    replace_part(sys.argv[1])
    sys.exit(main(["scp"]))
