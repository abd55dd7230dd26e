import pytest

from mile.pretrained import bundled_vocab
from mile.tokenizer import MileTokenizer


@pytest.fixture(scope="module")
def tok():
    return MileTokenizer(bundled_vocab())


def test_blip_special_tokens(tok):
    assert (tok.bos_token_id, tok.enc_token_id, tok.vocab_size) == (30522, 30523, 30524)
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id) == (0, 101, 102)


def test_question_starts_with_enc_and_answer_with_dec(tok):
    q, qm = tok.encode_questions(["Is the liver normal?", "What?"])
    a, am = tok.encode_answers(["yes", "left lung"])
    assert q[:, 0].tolist() == [30523, 30523] and a[:, 0].tolist() == [30522, 30522]
    assert qm.sum(1).tolist() == [7, 4]  # [ENC] is the liver normal ? [SEP] / [ENC] what ? [SEP]
    assert q[1, 4:].tolist() == [0, 0, 0] and a[0, 3].item() == 0
    assert tok.decode(a) == ["yes", "left lung"]


def test_questions_truncate_to_35_tokens_keeping_sep(tok):
    long = "is " * 80
    ids, mask = tok.encode_questions([long])
    assert ids.shape == (1, 35) and ids[0, -1].item() == tok.sep_token_id
    assert tok.count_tokens([long]) == [82]
    assert tok.encode_questions([long], max_len=10)[0].shape == (1, 10)


def test_decode_joins_wordpieces(tok):
    ids, _ = tok.encode_answers(["T2 weighted"])
    assert tok.decode(ids) == ["t2 weighted"]


def test_missing_vocab_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        MileTokenizer.from_dir(tmp_path)


TEXTS = ["Is the LIVER normal?", "T2-weighted MRI, axial", "pneumothorax", "肝脏在哪里?", "x" * 30 + " ##ab"]


@pytest.mark.parametrize("lowercase", [True, False])
def test_save_and_reload(tmp_path, lowercase):
    tok = MileTokenizer(bundled_vocab(), lowercase=lowercase)
    tok.save(tmp_path)
    again = MileTokenizer.from_dir(tmp_path)
    assert again.special_ids() == tok.special_ids() and again.lowercase is lowercase
    # every token keeps its id: the vocabulary (with [DEC] and [ENC]) is the same, in the same order
    assert again._tok.get_vocab() == tok._tok.get_vocab()
    for encode in ("encode_questions", "encode_answers"):
        ids, mask = getattr(again, encode)(TEXTS)
        expected_ids, expected_mask = getattr(tok, encode)(TEXTS)
        assert ids.tolist() == expected_ids.tolist() and mask.tolist() == expected_mask.tolist()
        assert again.decode(ids) == tok.decode(expected_ids)
    # the case setting travels too: cased, "LIVER" is not in the uncased vocabulary ([UNK], id 100)
    liver = bundled_vocab().read_text(encoding="utf-8").split("\n").index("liver")
    upper = liver if lowercase else 100
    assert again.encode_answers(["LIVER", "liver"])[0].tolist() == [[30522, upper, 102], [30522, liver, 102]]
