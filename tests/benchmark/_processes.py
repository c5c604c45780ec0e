"""Process helpers shared by the executor tests (local isolation and Ray)."""
from pathlib import Path


def is_dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}  # a zombie has ended; only its exit status waits to be read
