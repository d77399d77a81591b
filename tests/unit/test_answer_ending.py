"""Trimming an answer stopped at max_tokens back to its last complete sentence."""

from shared.pipeline.answer_ending import trim_to_last_sentence


def test_a_cut_answer_loses_only_its_broken_sentence():
    kept, dropped = trim_to_last_sentence("The deductible is $2,000. It applies per year. The out")
    assert kept == "The deductible is $2,000. It applies per year." and dropped == " The out"


def test_list_numbers_and_abbreviations_are_not_sentence_ends():
    assert trim_to_last_sentence("Steps:\n\n1. Check the provider.\n2. Call Nor")[0] == \
        "Steps:\n\n1. Check the provider."
    assert trim_to_last_sentence("Steps:\n1. Check the")[1] == ""  # no sentence: kept whole
    assert trim_to_last_sentence("Use it, e.g. for dental. Then the")[0] == \
        "Use it, e.g. for dental."


def test_closing_marks_stay_with_their_sentence():
    assert trim_to_last_sentence('It is "covered." Then the pl')[0] == 'It is "covered."'
    assert trim_to_last_sentence("**Note.** More text")[0] == "**Note.**"


def test_complete_answers_and_answers_without_a_sentence_are_kept_whole():
    for text in ("Complete.", "Complete. Also done!\n", "No sentence here at all", ""):
        assert trim_to_last_sentence(text) == (text, "")
