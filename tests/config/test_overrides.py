

def test_override_item_keeps_the_value_as_written():
    from vitlab.config import override_item

    assert override_item("+eval.readout=cls+gap") == ("eval.readout", "cls+gap")
    assert override_item("optim.lr.base=1e-3") == ("optim.lr.base", "1e-3")
    assert override_item("train.output_dir=/tmp/x-y") == ("train.output_dir", "/tmp/x-y")
