"""Key renaming rules from the checkpoint layouts we read to our module names.

Our names: `vision.{patch_embed,cls_token,pos_embed,blocks.N.{norm1,attn.{q,k,v,o},ls1,norm2,mlp.{fc1,fc2},ls2},norm}`,
`text_*.embeddings.{word,position,norm}`, `text_*.layers.N.{self_attn,cross_attn}.{q,k,v,o}`,
`text_*.layers.N.{self_attn_norm,cross_attn_norm,mlp.fc1,mlp.fc2,mlp_norm}`, `text_decoder.lm_head.{dense,norm,bias}`.
"""

from __future__ import annotations

from mile.model.checkpoints.state import Rule, split_qkv

P = r"(?P<kind>weight|bias)"
BLOCK = r"vision.blocks.\g<i>."


def bert_text_rules(src: str, dst: str) -> list[Rule]:
    """BERT-named layers (BERT, BLIP's med.py and transformers' BLIP text model) under regex prefix `src`."""
    layer = src + r"encoder\.layer\.(?P<i>\d+)\."
    out = dst + r".layers.\g<i>."
    rules: list[Rule] = [
        (src + r"embeddings\.word_embeddings\.weight", f"{dst}.embeddings.word.weight"),
        (src + r"embeddings\.position_embeddings\.weight", f"{dst}.embeddings.position.weight"),
        (src + r"embeddings\.LayerNorm\." + P, f"{dst}.embeddings.norm.\\g<kind>"),
    ]
    for theirs, ours in (("attention", "self_attn"), ("crossattention", "cross_attn")):
        for proj, short in (("query", "q"), ("key", "k"), ("value", "v")):
            rules.append((layer + rf"{theirs}\.self\.{proj}\." + P, out + f"{ours}.{short}.\\g<kind>"))
        rules.append((layer + rf"{theirs}\.output\.dense\." + P, out + f"{ours}.o.\\g<kind>"))
        rules.append((layer + rf"{theirs}\.output\.LayerNorm\." + P, out + f"{ours}_norm.\\g<kind>"))
    rules += [
        (layer + r"intermediate\.dense\." + P, out + r"mlp.fc1.\g<kind>"),
        (layer + r"output\.dense\." + P, out + r"mlp.fc2.\g<kind>"),
        (layer + r"output\.LayerNorm\." + P, out + r"mlp_norm.\g<kind>"),
    ]
    return rules


def bert_head_rules(src: str) -> list[Rule]:
    """BERT's LM prediction head (`cls.predictions.*`); the decoder weight is tied to the word embeddings."""
    return [
        (src + r"transform\.dense\." + P, r"text_decoder.lm_head.dense.\g<kind>"),
        (src + r"transform\.LayerNorm\." + P, r"text_decoder.lm_head.norm.\g<kind>"),
        (src + r"bias", "text_decoder.lm_head.bias"),
    ]


# Tied copies and buffers that carry no information of their own.
BERT_HEAD_TIED = [r".*cls\.predictions\.decoder\.(weight|bias)", r".*position_ids"]


def hf_blip_rules() -> list[Rule]:
    """transformers `BlipForQuestionAnswering` (Salesforce/blip-vqa-base)."""
    v = r"vision_model\."
    layer = v + r"encoder\.layers\.(?P<i>\d+)\."
    return [
        (v + r"embeddings\.class_embedding", "vision.cls_token"),
        (v + r"embeddings\.position_embedding", "vision.pos_embed"),
        (v + r"embeddings\.patch_embedding\." + P, r"vision.patch_embed.\g<kind>"),
        (layer + r"self_attn\.qkv\." + P, split_qkv(BLOCK + "attn")),
        (layer + r"self_attn\.projection\." + P, BLOCK + r"attn.o.\g<kind>"),
        (layer + r"layer_norm(?P<n>[12])\." + P, BLOCK + r"norm\g<n>.\g<kind>"),
        (layer + r"mlp\.(?P<fc>fc1|fc2)\." + P, BLOCK + r"mlp.\g<fc>.\g<kind>"),
        (v + r"post_layernorm\." + P, r"vision.norm.\g<kind>"),
        *bert_text_rules(r"text_encoder\.", "text_encoder"),
        *bert_text_rules(r"text_decoder\.bert\.", "text_decoder"),
        *bert_head_rules(r"text_decoder\.cls\.predictions\."),
    ]


def blip_pth_rules() -> list[Rule]:
    """The original BLIP / MISS training checkpoint (`{"model": state_dict}`)."""
    v = r"visual_encoder\."
    layer = v + r"blocks\.(?P<i>\d+)\."
    return [
        (v + r"cls_token", "vision.cls_token"),
        (v + r"pos_embed", "vision.pos_embed"),
        (v + r"patch_embed\.proj\." + P, r"vision.patch_embed.\g<kind>"),
        (layer + r"attn\.qkv\." + P, split_qkv(BLOCK + "attn")),
        (layer + r"attn\.proj\." + P, BLOCK + r"attn.o.\g<kind>"),
        (layer + r"(?P<n>norm1|norm2)\." + P, BLOCK + r"\g<n>.\g<kind>"),
        (layer + r"mlp\.(?P<fc>fc1|fc2)\." + P, BLOCK + r"mlp.\g<fc>.\g<kind>"),
        (v + r"norm\." + P, r"vision.norm.\g<kind>"),
        *bert_text_rules(r"text_encoder\.", "text_encoder"),
        *bert_text_rules(r"text_decoder\.bert\.", "text_decoder"),
        *bert_head_rules(r"text_decoder\.cls\.predictions\."),
    ]


# Parts of BLIP pre-training / retrieval checkpoints that a VQA model does not use.
BLIP_PRETRAIN_ONLY = [
    r".*_m\..*",  # momentum encoders
    r"(vision_proj|text_proj|itm_head|temp|image_queue|text_queue|idx_queue|ptr_queue)(\..*)?",
    r"text_encoder\.pooler\..*",
    r".*attn\.(attn_gradients|attention_map)",
]


def hf_vit_rules() -> list[Rule]:
    """transformers `ViTModel` and `Dinov2Model` (LayerScale, DINOv2's `norm1`/`mlp` names)."""
    e, layer = r"embeddings\.", r"encoder\.layer\.(?P<i>\d+)\."
    return [
        (e + r"cls_token", "vision.cls_token"),
        (e + r"position_embeddings", "vision.pos_embed"),
        (e + r"patch_embeddings\.projection\." + P, r"vision.patch_embed.\g<kind>"),
        (layer + r"attention\.attention\.query\." + P, BLOCK + r"attn.q.\g<kind>"),
        (layer + r"attention\.attention\.key\." + P, BLOCK + r"attn.k.\g<kind>"),
        (layer + r"attention\.attention\.value\." + P, BLOCK + r"attn.v.\g<kind>"),
        (layer + r"attention\.output\.dense\." + P, BLOCK + r"attn.o.\g<kind>"),
        (layer + r"(layernorm_before|norm1)\." + P, BLOCK + r"norm1.\g<kind>"),
        (layer + r"(layernorm_after|norm2)\." + P, BLOCK + r"norm2.\g<kind>"),
        (layer + r"(intermediate\.dense|mlp\.fc1)\." + P, BLOCK + r"mlp.fc1.\g<kind>"),
        (layer + r"(output\.dense|mlp\.fc2)\." + P, BLOCK + r"mlp.fc2.\g<kind>"),
        (layer + r"layer_scale(?P<n>[12])\.lambda1", BLOCK + r"ls\g<n>.gamma"),
        (r"layernorm\." + P, r"vision.norm.\g<kind>"),
    ]


VIT_UNUSED = [r"(.*\.)?embeddings\.mask_token", r"(.*\.)?pooler\..*", r"classifier\..*"]
BERT_UNUSED = [r"(.*\.)?pooler\..*", r"(.*\.)?embeddings\.position_ids", r"cls\..*", r"qa_outputs\..*"]
