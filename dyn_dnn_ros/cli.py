"""The ``dyn-dnn-ros`` command-line tool: one entry point, many subcommands."""

import argparse
import importlib
import sys

# name -> (module under dyn_dnn_ros.commands, one-line help). The help lives
# here rather than in the modules so listing commands imports nothing heavy.
COMMANDS = {
    'monitor': ('monitor', 'print this machine\'s hardware availability readings'),
    'corpus': ('corpus', 'build the English->German corpus from Debian catalogs'),
    'tokenizer': ('tokenizer', 'train the joint SentencePiece model'),
    'train': ('train', 'train the SuperTransformer (HAT + sandwich rule)'),
    'translate': ('translate', 'translate stdin to stdout with a sub-network'),
    'evaluate': ('evaluate', 'BLEU of a sub-network on the test split'),
    'calibrate-beam': ('calibrate_beam', 'propose dynamic beam-width thresholds from validation'),
    'latency': ('latency', 'measure the latency dataset of random sub-networks'),
    'predictor': ('predictor', 'fit the latency predictor to a latency dataset'),
    'search': ('search', 'evolutionary search for the best sub-network under a latency limit'),
    'sweep': ('sweep', 'search a range of latency limits and write the operating-point library'),
    'design-report': ('design_report', 'design-space choices the library uses; reduced space'),
    'wenet-train': ('wenet_train', 'train the WeNet CNN on handwritten digits'),
    'wenet-dse': ('wenet_dse', 'greedy design-space exploration of WeNet'),
    'bringup': ('bringup', 'start the whole system in one process'),
    'demo': ('demo', 'adaptation demo: dynamic operating points vs a static model'),
}


def _available_commands():
    """Commands whose module is present in this installation."""
    import importlib.util
    return {
        name: entry for name, entry in COMMANDS.items()
        if importlib.util.find_spec(f'dyn_dnn_ros.commands.{entry[0]}') is not None
    }


def build_parser(commands=None):
    commands = _available_commands() if commands is None else commands
    parser = argparse.ArgumentParser(
        prog='dyn-dnn-ros',
        description='Dynamic DNNs for ROS 2: train, search, measure and run '
                    'weight-sharing networks that switch size at run time.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, (_, help_text) in commands.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = _available_commands()
    parser = build_parser(commands)
    if not argv or argv[0] not in commands:
        args = parser.parse_args(argv)  # prints help or the usage error
        parser.print_help()
        return 0 if args.command is None and not argv else 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = commands[name]
    module = importlib.import_module(f'dyn_dnn_ros.commands.{module_name}')
    sub_parser = argparse.ArgumentParser(prog=f'dyn-dnn-ros {name}', description=help_text)
    module.add_arguments(sub_parser)
    return int(module.run(sub_parser.parse_args(rest)) or 0)


if __name__ == '__main__':
    sys.exit(main())
