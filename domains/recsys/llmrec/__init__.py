"""LLMRec (WSDM'24) on LightGCN: LLM graph augmentation, side features, pruning and MAE — the library.

The ``domains.recsys.{ingest,train,augment,evaluate,recommend,embed,ablate,noisy_augmentation}`` commands are
thin wrappers around these modules (each command's config dataclass lives with the function it calls):

- data: :mod:`.interactions` (split interaction data), :mod:`.recbole_dataset` (RecBole folders with a
  knowledge graph), :mod:`.released_layout` (LLMRec's JSON/npy/pickle layout) with :mod:`.restricted_pickle`,
  :mod:`.movielens` (the built-in MovieLens-100K), :mod:`.datasets` (which input to load), :mod:`.graphs`,
  :mod:`.text_features`, :mod:`.parquet_tables` (ingest's output), :mod:`.ingestion` (the ingest step);
- model and training: :mod:`.model` (the ``nn.Module``), :mod:`.bpr_sampling`, :mod:`.ranking_metrics`,
  :mod:`.training` (fit, evaluate, reload a run), :mod:`.pipeline` (base → augmentation → augmented model),
  :mod:`.evaluation` (score a trained run on a split), :mod:`.ablation`, :mod:`.noisy_augmentation`
  (the controlled augmentation/denoising experiment);
- augmentation: :mod:`.prompts`, :mod:`.backends`, :mod:`.prompt_cache`, :mod:`.augmentation`,
  :mod:`.augmentation_files`;
- using a trained run: :mod:`.recommendations` (top-N for users), :mod:`.store_export` (vectors into the store).
"""
