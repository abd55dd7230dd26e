"""Data for the instruction tests (a plain module, importable by a name no other test directory uses)."""

from __future__ import annotations

from typing import Any

from data_builders import rad_record

# Enough answers per question type to exercise distractor drawing, including spelling variants that normalise
# to one answer, yes/no answers inside an open type, a combined label, a typo label and mixed-case "Other".
RAD_OPTIONS_TRAIN = [
    rad_record(1, "synpic1.jpg", "Is there a mass?", "Yes", "CLOSED"),
    rad_record(2, "synpic1.jpg", "Is the liver normal?", "NO", "CLOSED", question_type="ABN"),
    rad_record(3, "synpic2.png", "Where is the lesion?", "Left lung", question_type="POS"),
    rad_record(4, "synpic2.png", "Where is the mass?", "left  LUNG.", question_type="POS"),
    rad_record(5, "synpic2.png", "Where is the opacity?", "Right lung", question_type="POS"),
    rad_record(6, "synpic3.jpg", "Where is the fracture?", "Femur", question_type="POS"),
    rad_record(7, "synpic3.jpg", "Where is the effusion?", "Pleura", question_type="POS"),
    rad_record(8, "synpic3.jpg", "Is it on the left?", "yes", question_type="POS"),
    rad_record(9, "synpic1.jpg", "Where is the stone?", "Kidney", question_type="POS, PRES"),
    rad_record(10, "synpic1.jpg", "What organ?", "Brain", question_type="Other"),
    rad_record(11, "synpic2.png", "What organ is shown?", "Heart", question_type="OTHER"),
    rad_record(12, "synpic3.jpg", "Is it CT or MRI?", "CT", "CLOSED", question_type="ATRIB"),
    rad_record(13, "synpic3.jpg", "Contrast?", "With contrast", question_type="ATTRIB"),
    rad_record(14, "synpic1.jpg", "How many stones?", 4, question_type="COUNT"),
]


def authors_format(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our records cut to the authors' release format: four keys, numeric answers as JSON numbers."""
    return [
        {
            "img_name": r["img_name"],
            "qid": r["qid"],
            "answer": int(r["answer"]) if r["answer"].isdigit() else r["answer"],
            "question_pool": r["question_pool"],
        }
        for r in records
    ]
