"""`python -m hunyuan_video`: the `hunyuan-video` command (so that `torchrun -m hunyuan_video` can launch it)."""

import sys

from hunyuan_video.cli import main

if __name__ == "__main__":
    sys.exit(main())
