"""User functions that the `.flow` examples in docs/language.md name by import path
(`udf risk(float, str) -> float = "mypkg.scoring:risk"`, `reduce("mypkg.reducers:longest", ...)`)."""
