from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'dyn_dnn_ros'


def share_files(*patterns):
    """(install folder, files) pairs that mirror the source tree under share/."""
    grouped = {}
    for pattern in patterns:
        for path in sorted(glob(pattern, recursive=True)):
            if os.path.isfile(path):
                folder = os.path.join('share', package_name, os.path.dirname(path))
                grouped.setdefault(folder, []).append(path)
    return sorted(grouped.items())


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        *share_files('launch/*.py', 'config/**/*.yaml', 'config/**/*.xml', 'models/**/*',
                    'data/corpus/valid.*', 'data/corpus/test.*'),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='dyn_dnn_ros maintainers',
    maintainer_email='maintainers@dyn-dnn-ros.org',
    description='Run-time switchable deep networks for ROS 2.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'dyn-dnn-ros = dyn_dnn_ros.cli:main',
            'resource_monitor = dyn_dnn_ros.ros.nodes.resource_monitor:main',
            'translation_node = dyn_dnn_ros.ros.nodes.translation:main',
            'perception_node = dyn_dnn_ros.ros.nodes.perception:main',
            'dnn_manager = dyn_dnn_ros.ros.nodes.manager:main',
        ],
    },
)
