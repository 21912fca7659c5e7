"""Training: recipes that (re)train a model from data, shared by poisoning, RONI, the gate and hardening."""

from bastion.training.recipe import Recipe, TorchRecipe, demo_recipe, load_recipe

__all__ = ["Recipe", "TorchRecipe", "demo_recipe", "load_recipe"]
