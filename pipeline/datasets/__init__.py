"""Logged sessions as a dataset on disk, and back: what an evaluation replays elsewhere.

:func:`write_dataset` writes sessions' events (as read from the log) to a folder that
Hugging Face's ``audiofolder`` loader reads (``metadata.jsonl`` with a ``file_name`` per
utterance, each utterance a WAV file), beside every event of each session in log order
(``sessions/<id>.jsonl``); :func:`read_dataset` gives the same events back, so anything
computed from a session's events (a replay, an evaluation, the stats) is the same from
the dataset as from the log. The layout is in :mod:`~pipeline.datasets.layout`.
:func:`read_references` reads reference transcripts (a dataset's ``metadata.jsonl`` with a
``reference`` added to rows, or a file of its own) for an evaluation against the truth.
"""

from pipeline.datasets.layout import DATASET_FORMAT, DatasetSummary
from pipeline.datasets.reader import DatasetSession, read_dataset
from pipeline.datasets.references import References, dataset_references, read_references
from pipeline.datasets.writer import DatasetWriter, write_dataset

__all__ = ["DATASET_FORMAT", "DatasetSession", "DatasetSummary", "DatasetWriter",
           "References", "dataset_references", "read_dataset", "read_references",
           "write_dataset"]
