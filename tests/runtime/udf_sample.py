"""Functions named by import path in the compile tests (`udf("udf_sample:...")`)."""


def risk(amount: float, country: str) -> float:
    return amount * (2.0 if country == "XX" else 1.0)


class Scoring:
    @staticmethod
    def double(x: int) -> int:
        return x * 2


NOT_CALLABLE = 42
