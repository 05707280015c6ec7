"""Person-name recognition for clinical text (see ``recognizer`` for the rule order)."""

from pipelines.deid.names.recognizer import NameRecognizer
from pipelines.deid.names.vocabulary import NameVocabulary, english_stems

__all__ = ["NameRecognizer", "NameVocabulary", "english_stems"]
