"""repflow_ros: the ROS 2 adapter over repflow_core (all ROS imports live in this package)."""
