# z_candidate.sh EXPORT NAME [W]: the bundled file with A2V's blocks from EXPORT; foreign voice, A2V controls, T2AV grid
set -e
mkdir -p runs/z/c_$2
.venv/bin/python docs/training/lab/y13_swap_a2v.py $1 runs/z/c_$2/harmony_tiny.safetensors ${3:-1}
echo "== $2"
MODEL=runs/z/c_$2/harmony_tiny.safetensors .venv/bin/python docs/training/lab/z_a2v_foreign_voices.py
.venv/bin/python scripts/control_sweep.py --job A2V --model runs/z/c_$2/harmony_tiny.safetensors --seeds 10-17 | grep -o '"controls": {[^}]*}'
MODEL=runs/z/c_$2/harmony_tiny.safetensors .venv/bin/python docs/training/lab/y2_grid24.py synccfg
