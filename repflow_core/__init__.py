"""repflow_core: representation flow for action recognition, in pure PyTorch (never imports ROS)."""

__version__ = "0.1.0"
