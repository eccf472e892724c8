"""Explorer page: biomed images and captions — text search, upload (image or DICOM), zero-shot, map, detail."""

from __future__ import annotations

import io

import numpy as np
import streamlit as st
import torch

from apps.domain_page import inventory, render_domain_page, render_training_curves, sample_table
from apps.run_artifacts import BIOMED_PRETRAIN_COMMAND, biomed_encoder, config_strings, finished_run_folders
from apps.shard_media import IMAGE_COLUMN_CONFIG, image_bytes, image_index, shard_files, with_thumbnails
from apps.store_access import nearest, query, store_path
from apps.upload_checks import (
    IMAGE_KINDS,
    MAX_DICOM_BYTES,
    UploadRejected,
    check_upload,
    decode_dicom,
    decode_image,
)
from shared.evaluation.zero_shot import zero_shot_classifier, zero_shot_predict

ZERO_SHOT_TEMPLATES = ("a medical image of {}.", "{}", "a figure showing {}.")


def encoder_for(model_name: str, model_version: str) -> tuple[object, object] | None:
    """The exported model whose weights produced the stored vectors (run ids recorded with them first)."""
    run_ids = query(
        "SELECT DISTINCT run_id FROM all_embeddings WHERE domain = 'biomed' AND model_name = ? AND model_version = ?",
        [model_name, model_version],
    )["run_id"].tolist()
    folders = finished_run_folders("biomed", BIOMED_PRETRAIN_COMMAND, prefer=run_ids)
    folders = [folder for folder in folders if (folder / "export").is_dir()]
    if not folders:
        return None
    return biomed_encoder(str(folders[0] / "export"))


def biomed_image_index() -> dict[str, tuple[str, str]]:
    """Sample id → image in the shards the biomed runs trained and validated on (their config.yaml)."""
    folders = finished_run_folders("biomed", BIOMED_PRETRAIN_COMMAND)
    return image_index(shard_files(text for folder in folders for text in config_strings(folder)))


def biomed_thumbnails(frame):
    """``frame`` with a thumbnail of each sample's image."""
    return with_thumbnails(frame, biomed_image_index())


def biomed_image(sample_id: str):
    """The full image of one sample from the run's shards, or None."""
    data = image_bytes(biomed_image_index(), sample_id)
    if data is None:
        return None
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def with_captions(neighbours, samples):
    """Neighbour table with the thumbnail, caption and concept of each sample."""
    columns = [c for c in ("sample_id", "caption", "concept", "image_set") if c in samples.columns]
    return biomed_thumbnails(
        neighbours[["rank", "sample_id", "score"]].merge(samples[columns], on="sample_id", how="left")
    )


def encode_texts(model, loaded, texts: list[str]) -> np.ndarray:
    """Unit-norm text embeddings of ``texts`` with the run's own tokenizer."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return model.encode("text", loaded.tokenizer(texts).to(device)).float().cpu().numpy()


render_domain_page("biomed", thumbnails=biomed_thumbnails, image_of=biomed_image)
if store_path().is_file():
    with st.expander("Training curves", expanded=False):
        render_training_curves("biomed")
if store_path().is_file() and not inventory("biomed").empty:
    models = inventory("biomed")
    image_models = models[models["modality"] == "image"]
    if image_models.empty:
        st.stop()
    st.divider()
    st.header("Search and classify")
    labels = (image_models["model_name"] + " " + image_models["model_version"]).tolist()
    picked = st.selectbox("Model for queries", labels, key="biomed_query_model")
    row = image_models.iloc[labels.index(picked)]
    encoder = encoder_for(row["model_name"], row["model_version"])
    if encoder is None:
        st.info("No exported model for these vectors beside the store (runs/biomed/<run>/export); text and "
                "upload search need it. Run `python -m domains.biomed.pretrain`.")  # fmt: skip
        st.stop()
    model, loaded = encoder
    samples = sample_table("biomed")
    identity = {"domain": "biomed", "model_name": row["model_name"], "model_version": row["model_version"]}
    k = st.slider("Results", 1, 30, 8, key="biomed_query_k")

    search_tab, upload_tab = st.tabs(["Text → images", "Upload an image or a DICOM"])
    with search_tab:
        text = st.text_input("Describe the image", key="biomed_text_query", placeholder="e.g. chest radiograph")
        if text.strip():
            vector = encode_texts(model, loaded, [text.strip()])[0]
            hits = nearest(vector=vector, k=k, modality="image", **identity)
            st.dataframe(
                with_captions(hits, samples), hide_index=True, width="stretch", key="biomed_text_hits",
                column_config=IMAGE_COLUMN_CONFIG,
            )  # fmt: skip

    with upload_tab:
        upload = st.file_uploader(
            "PNG, JPEG or DICOM (checked by content; DICOM header shown without identifying fields)",
            type=["png", "jpg", "jpeg", "dcm", "dicom"],
            key="biomed_upload",
        )
        if upload is not None:
            try:
                data = upload.getvalue()
                kind = check_upload(data, IMAGE_KINDS | {"dicom"}, MAX_DICOM_BYTES)
                if kind == "dicom":
                    dicom = decode_dicom(data)
                    image_rgb = dicom.frames[0]
                    st.caption(f"DICOM caption: {dicom.caption}")
                    st.json(dicom.header, expanded=False)
                    st.caption("Chain: " + " → ".join(dicom.steps))
                    from PIL import Image

                    image = Image.fromarray(image_rgb)
                else:
                    image = decode_image(data)
            except UploadRejected as error:
                st.error(f"Upload refused: {error}")
            else:
                st.image(image, caption=f"uploaded {kind}", width=224)
                with torch.no_grad():
                    pixels = loaded.preprocess_val(image).unsqueeze(0).to(next(model.parameters()).device)
                    vector = model.encode("image", pixels).float().cpu().numpy()[0]
                left, right = st.columns(2)
                with left:
                    st.subheader("Nearest images")
                    hits = nearest(vector=vector, k=k, modality="image", **identity)
                    st.dataframe(
                        with_captions(hits, samples),
                        hide_index=True,
                        width="stretch",
                        column_config=IMAGE_COLUMN_CONFIG,
                    )
                with right:
                    st.subheader("Nearest captions")
                    captions = nearest(vector=vector, k=k, modality="text", **identity)
                    st.dataframe(
                        with_captions(captions, samples), hide_index=True, width="stretch",
                        column_config=IMAGE_COLUMN_CONFIG,
                    )  # fmt: skip
                st.subheader("Zero-shot")
                typed = st.text_input(
                    "Labels, comma separated", "chest radiograph, histology slide, retina photograph",
                    key="biomed_zero_shot_labels",
                )  # fmt: skip
                classnames = [c.strip() for c in typed.split(",") if c.strip()]
                if len(classnames) >= 2:
                    weights = zero_shot_classifier(
                        lambda prompts: encode_texts(model, loaded, list(prompts)), classnames, ZERO_SHOT_TEMPLATES
                    )
                    scale = float(model.clip.logit_scale.exp())
                    logits = zero_shot_predict(vector[None, :], weights, logit_scale=scale)[0]
                    probabilities = np.exp(logits - logits.max())
                    probabilities /= probabilities.sum()
                    order = np.argsort(-probabilities)
                    st.dataframe(
                        {"label": [classnames[i] for i in order], "probability": probabilities[order].round(4)},
                        hide_index=True,
                        key="biomed_zero_shot",
                    )
                else:
                    st.info("Type at least two labels.")
