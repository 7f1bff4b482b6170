cd /work/main
for v in "e200|--epochs 200" "lam|--epochs 200 --set lam=1.5" "mf|--epochs 200 --guide mean-field --set alpha=2" "e200lr|--epochs 200 --lr 0.001 --lr-step 20"; do
  name=${v%%|*}; args=${v#*|}
  OMP_NUM_THREADS=1 .venv/bin/python -m pyro_mixvae fit gmvae --data digits --seed 0 --quiet --out /tmp/gd/$name $args > /dev/null 2>&1
  python3 -c "import json;d=json.load(open('/tmp/gd/$name/metrics.json'));print('$name', round(d['acc'],3), round(d['elbo'],3), d['clusters_used'], round(d['train_seconds']))"
done
for v in "lam2|0|--epochs 200 --set lam=2" "lam3|0|--epochs 200 --set lam=3" "lam15s1|1|--epochs 200 --set lam=1.5" "lam15s2|2|--epochs 200 --set lam=1.5"; do
  IFS='|' read name seed args <<< "$v"
  OMP_NUM_THREADS=1 .venv/bin/python -m pyro_mixvae fit gmvae --data digits --seed $seed --quiet --out /tmp/gd/$name $args > /dev/null 2>&1
  python3 -c "import json;d=json.load(open('/tmp/gd/$name/metrics.json'));print('$name', round(d['acc'],3), round(d['elbo'],3), d['clusters_used'], round(d['train_seconds']))"
done
