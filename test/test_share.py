"""Where the package reads its shipped files and writes what its commands make."""

from pathlib import Path

from dyn_dnn_ros import share


def test_a_source_checkout_reads_and_writes_in_its_own_root():
    root = Path(__file__).resolve().parents[1]
    assert share.source_root() == root == share.share_dir()
    assert share.runs_path('demo') == root / 'runs' / 'demo'
    assert share.data_path('corpus') == root / 'data' / 'corpus'
    assert share.library_path('translation', 'cpu') == \
        root / 'config' / 'generated' / 'operating_points_translation_cpu.yaml'


def test_an_installed_package_writes_in_the_current_folder_not_its_share(
        tmp_path, monkeypatch):
    installed = tmp_path / 'install' / 'share' / 'dyn_dnn_ros'
    workspace = tmp_path / 'workspace'
    workspace.mkdir()
    monkeypatch.setattr(share, 'source_root', lambda: None)
    monkeypatch.setattr(share, 'share_dir', lambda: installed)
    monkeypatch.chdir(workspace)
    assert share.config_path('corpus.yaml') == installed / 'config' / 'corpus.yaml'
    assert share.runs_path('design', 'latency_cpu.csv') == \
        workspace / 'runs' / 'design' / 'latency_cpu.csv'
    assert share.data_path('corpus') == workspace / 'data' / 'corpus'
    # A path recorded in a file that travels: a shipped file relative to the
    # share, a made one to the folder holding runs/ and data/, others absolute.
    assert share.portable_path(workspace / 'runs' / 'x.csv') == Path('runs/x.csv')
    assert share.portable_path(installed / 'config' / 'a.yaml') == Path('config/a.yaml')
    elsewhere = workspace / 'notes' / 'elsewhere.yaml'
    assert share.portable_path(elsewhere) == elsewhere.resolve()


def test_an_installed_package_run_from_its_workspace_names_shipped_files_by_the_share(
        tmp_path, monkeypatch):
    """The workspace holds the install folder: shipped files still read ``config/...``."""
    installed = tmp_path / 'install' / 'share' / 'dyn_dnn_ros'
    monkeypatch.setattr(share, 'source_root', lambda: None)
    monkeypatch.setattr(share, 'share_dir', lambda: installed)
    monkeypatch.chdir(tmp_path)
    assert share.portable_path(installed / 'config' / 'a.yaml') == Path('config/a.yaml')
    assert share.portable_path(tmp_path / 'runs' / 'b.csv') == Path('runs/b.csv')
    assert share.portable_path(tmp_path / 'src' / 'c.yaml') == (tmp_path / 'src' / 'c.yaml')
