"""vlmrl.rl: the one RL core (DESIGN 3.2).

- `episode`: Episode, Turn, RolloutSource, JSONL round trip, OfflineSource
- `advantages`: group_normalized_advantages, rloo_advantages, step_gae, broadcast_to_tokens, offline_weighted
- `losses`: policy_loss (PPO-clip, clip-higher, k3 KL, entropy, aggregations, episode masks)
- `trainer`: Trainer, RewardFunction; `settings`: TrainerConfig
- `prompts`: PromptSource, verifiable rewards, held-out accuracy; `rlvr`: the `vlmrl rlvr` recipe
- `distributed`: torchrun data parallelism helpers; `sft`: the thin SFT loop
"""
