"""Turn-taking: when the user's turn ends, and what speech over a reply means.

A live session hears its input through a :class:`SpeechInput` (PCM in; speech starts,
pauses and utterances out, segmented by :mod:`pipeline.audio`); at each pause its
:class:`TurnPolicy` sets the silence that ends the turn there. The replay evaluation runs a
logged session's input through the same endpointing and a policy from the same factory
(:func:`turn_policy`) under other settings, so a replay decides as the live session would
have. Which session does what with the turns it hears (replies, barge-in,
preemptive replies) is :mod:`pipeline.session`'s.

=====================  ==================================================================
``speech_input``       one session's speech input: resampling, a bounded frame queue,
                       push-to-talk; the endpointing its settings ask for
                       (:func:`session_endpoint`) and what an utterance appends
``policy``             what ends a turn: the :class:`TurnPolicy` seam (the silence that ends
                       the turn at a pause) and its implementations: silence only, the
                       audio end-of-turn model (with text cues), the text judge, and their
                       combination (:class:`SmartPolicy`), built by :func:`turn_policy`
``turn_text``          text cues: does a transcript read unfinished (:func:`sounds_unfinished`)
``backchannel``        is speech over a reply a backchannel or an interruption
``transcripts``        how a session's speech is transcribed (:func:`transcribe_in`)
``evaluation``         turn-taking settings replayed on logged sessions, and their measures
``overlaps``           speech over a reply in a session's log, judged again under other settings
=====================  ==================================================================
"""

from pipeline.turntaking.backchannel import backchannel_prompt, heard_backchannel, is_backchannel
from pipeline.turntaking.evaluation import (
    LoggedInput,
    Replay,
    TurnEnd,
    logged_input,
    missed_ends,
    quantiles,
    quick_transcriber,
    replay_turn_ends,
    score_against_truth,
    turn_measures,
)
from pipeline.turntaking.overlaps import (
    Outcome,
    Overlap,
    judge_overlap,
    logged_overlaps,
    overlap_measures,
)
from pipeline.turntaking.policy import (
    AudioModelPolicy,
    SilencePolicy,
    SmartPolicy,
    TextJudgePolicy,
    TurnPolicy,
    judged_by,
    turn_detection,
    turn_policy,
)
from pipeline.turntaking.speech_input import (
    FRAME_QUEUE,
    SpeechInput,
    endpoint_config,
    session_endpoint,
    utterance_events,
)
from pipeline.turntaking.transcripts import transcribe_in
from pipeline.turntaking.turn_text import sounds_unfinished

__all__ = [
    "FRAME_QUEUE",
    "AudioModelPolicy",
    "LoggedInput",
    "Outcome",
    "Overlap",
    "Replay",
    "SilencePolicy",
    "SmartPolicy",
    "SpeechInput",
    "TextJudgePolicy",
    "TurnEnd",
    "TurnPolicy",
    "backchannel_prompt",
    "endpoint_config",
    "heard_backchannel",
    "is_backchannel",
    "judge_overlap",
    "judged_by",
    "logged_input",
    "logged_overlaps",
    "missed_ends",
    "overlap_measures",
    "quantiles",
    "quick_transcriber",
    "replay_turn_ends",
    "score_against_truth",
    "session_endpoint",
    "sounds_unfinished",
    "transcribe_in",
    "turn_detection",
    "turn_measures",
    "turn_policy",
    "utterance_events",
]
