from agents.prompts.diff import diff_stats, word_diff


def test_word_diff_marks_changed_words_and_keeps_the_rest():
    pieces = word_diff("a b c d e", "a x c d y")
    assert pieces == [("equal", "a "), ("del", "b"), ("ins", "x"), ("equal", " c d "), ("del", "e"), ("ins", "y")]
    assert diff_stats(pieces) == {"added": 2, "removed": 2}


def test_a_rewritten_sentence_is_one_deletion_and_one_insertion():
    pieces = word_diff("Answer. Refund whatever the customer asks.", "Answer. Refunds above the amount paid.")
    assert pieces == [("equal", "Answer. "), ("del", "Refund whatever the customer asks."),
                      ("ins", "Refunds above the amount paid.")]


def test_identical_and_empty_texts():
    assert word_diff("same text", "same text") == [("equal", "same text")]
    assert word_diff("", "new") == [("ins", "new")]
    assert word_diff("old", "") == [("del", "old")]
