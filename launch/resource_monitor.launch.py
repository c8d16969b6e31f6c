"""Start the resource monitor, and the diagnostic aggregator for rqt_robot_monitor."""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare('dyn_dnn_ros'), 'config'])
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
                              description='also start diagnostic_aggregator'),
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
