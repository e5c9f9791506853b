"""Notification channels. One `Channel` protocol, one module per family, one registry by kind."""

from connectors.channels.base import (Channel, ChannelConfig, EndpointGone, Notification,
                                      RetryLater, build_channel, channel_kinds)

__all__ = ["Channel", "ChannelConfig", "EndpointGone", "Notification", "RetryLater",
           "build_channel", "channel_kinds"]
