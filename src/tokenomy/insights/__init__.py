"""Where the bill is heading and what a change would save.

- `forecast`: a period-end projection of daily spend, with an uncertainty band.
- `alerts`: spend anomalies, forecasts over budget, unpriced models; sent as
  Slack-compatible webhooks and log lines.
- `simulate` and `traffic`: replay logged traffic under another policy.
- `otel`: OpenTelemetry spans for each request (the ``otel`` extra).

The forecast, the alert rules and the simulator's arithmetic need nothing beyond
the base install; plots need matplotlib and the shared parquet traffic needs
pyarrow (``pip install 'tokenomy[insights]'``).
"""

from __future__ import annotations

from .forecast import Forecast, daily_spend, forecast, month_bounds

__all__ = ["Forecast", "daily_spend", "forecast", "month_bounds"]
