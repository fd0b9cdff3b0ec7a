from attndiff.sfbd.stopping import should_stop


def test_stopping_rule():
    assert not should_stop("denoised_psnr", 1, [{"denoised_psnr": 10.0}, {"denoised_psnr": 12.0}])
    assert should_stop("denoised_psnr", 1, [{"denoised_psnr": 10.0}, {"denoised_psnr": 12.0}, {"denoised_psnr": 11.0}])
    assert not should_stop("fid", 2, [{"fid": 50.0}, {"fid": 40.0}, {"fid": 45.0}])
    assert should_stop("fid", 2, [{"fid": 50.0}, {"fid": 40.0}, {"fid": 45.0}, {"fid": 41.0}])
    assert not should_stop("none", 1, [{"fid": 50.0}, {"fid": 60.0}])
