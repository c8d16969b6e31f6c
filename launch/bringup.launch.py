"""The whole system on a ROS host: monitor, workers, manager and diagnostics aggregator."""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare('dyn_dnn_ros'), 'config'])
    params = LaunchConfiguration('params_file')
    namespace = LaunchConfiguration('namespace')
    device = {'device': LaunchConfiguration('device')}

    return LaunchDescription([
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([config, 'dyn_dnn_ros.yaml']),
                              description='ros__parameters file for all nodes'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of every node and topic'),
        DeclareLaunchArgument('device', default_value='cpu',
                              description='device of the worker nodes: cpu, cuda or auto'),
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
             parameters=[PathJoinSubstitution([config, 'diagnostic_aggregator.yaml'])]),
    ])
