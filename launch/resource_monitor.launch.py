"""Start the resource monitor, and the diagnostic aggregator for rqt_robot_monitor.

    ros2 launch dyn_dnn_ros resource_monitor.launch.py [scenario:=core_drop] [aggregator:=false]

``fastdds_profile`` works as in bringup.launch.py: the shipped Fast DDS
profile unless the environment already chose Fast DDS's transports.
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
    profile = LaunchConfiguration('fastdds_profile')
    profile_chosen = IfCondition(NotEqualsSubstitution(profile, ''))
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its topics'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([config,
                                                                  'resource_monitor.yaml']),
                              description='ros__parameters file of the monitor'),
        DeclareLaunchArgument('scenario', default_value='',
                              description='scenario YAML (or shipped name) to replay'),
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
             namespace=LaunchConfiguration('namespace'),
             parameters=[LaunchConfiguration('params_file'),
                         {'scenario': LaunchConfiguration('scenario')}],
             output='screen'),
        Node(package='diagnostic_aggregator', executable='aggregator_node',
             name='diagnostic_aggregator',
             parameters=[PathJoinSubstitution([config, 'diagnostic_aggregator.yaml'])],
             condition=IfCondition(LaunchConfiguration('aggregator'))),
    ])
