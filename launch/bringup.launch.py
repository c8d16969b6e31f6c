"""The whole system on a ROS host: monitor, workers, manager and diagnostics aggregator.

    ros2 launch dyn_dnn_ros bringup.launch.py [device:=cuda] [aggregator:=false] ...

``aggregator:=false`` leaves out ``diagnostic_aggregator`` (a host without
the ``diagnostics`` packages). ``fastdds_profile`` chooses the Fast DDS
profile these nodes load (FASTDDS_DEFAULT_PROFILES_FILE): by default the
shipped large-image transports, unless the environment already sets
FASTDDS_DEFAULT_PROFILES_FILE or FASTDDS_BUILTIN_TRANSPORTS; '' leaves the
environment as it is. The camera driver's process needs the same profile for
best-effort images of 640x480 and larger (docs/ros_host.md).
"""

import os

from launch.actions import DeclareLaunchArgument, LogInfo, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, NotEqualsSubstitution, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

TRANSPORT_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTDDS_BUILTIN_TRANSPORTS')


def default_fastdds_profile(config):
    """The shipped profile, or '' where the environment already chose Fast DDS's transports."""
    if any(os.environ.get(name) for name in TRANSPORT_VARIABLES):
        return ''
    return PathJoinSubstitution([config, 'fastdds', 'large_images.xml'])


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare('dyn_dnn_ros'), 'config'])
    params = LaunchConfiguration('params_file')
    namespace = LaunchConfiguration('namespace')
    device = {'device': LaunchConfiguration('device')}
    profile = LaunchConfiguration('fastdds_profile')
    profile_chosen = IfCondition(NotEqualsSubstitution(profile, ''))

    return LaunchDescription([
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([config, 'dyn_dnn_ros.yaml']),
                              description='ros__parameters file for all nodes'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of every node and topic'),
        DeclareLaunchArgument('device', default_value='cpu',
                              description='device of the worker nodes: cpu, cuda or auto'),
        DeclareLaunchArgument('aggregator', default_value='true',
                              description='also start diagnostic_aggregator (false on a host '
                                          'without the diagnostics packages)'),
        DeclareLaunchArgument('fastdds_profile', default_value=default_fastdds_profile(config),
                              description='Fast DDS XML profile of these nodes '
                                          '(FASTDDS_DEFAULT_PROFILES_FILE); default: the shipped '
                                          'large-image transports unless the environment sets '
                                          'FASTDDS_DEFAULT_PROFILES_FILE or '
                                          "FASTDDS_BUILTIN_TRANSPORTS; '' = leave it as it is"),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', profile,
                               condition=profile_chosen),
        LogInfo(msg=['Fast DDS profile: ', profile], condition=profile_chosen),
        Node(package='dyn_dnn_ros', executable='resource_monitor', name='resource_monitor',
             namespace=namespace, parameters=[params], output='screen'),
        Node(package='dyn_dnn_ros', executable='translation_node', name='translation_node',
             namespace=namespace, parameters=[params, device], output='screen'),
        Node(package='dyn_dnn_ros', executable='perception_node', name='perception_node',
             namespace=namespace, parameters=[params, device], output='screen'),
        Node(package='dyn_dnn_ros', executable='dnn_manager', name='dnn_manager',
             namespace=namespace, parameters=[params], output='screen'),
        Node(package='diagnostic_aggregator', executable='aggregator_node',
             name='diagnostic_aggregator',
             parameters=[PathJoinSubstitution([config, 'diagnostic_aggregator.yaml'])],
             condition=IfCondition(LaunchConfiguration('aggregator'))),
    ])
