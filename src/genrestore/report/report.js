(function () {
  function fmt(s) { s = Math.floor(s || 0); return Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0'); }
  document.querySelectorAll('.ab').forEach(function (box) {
    var a = box.querySelector('audio.a'), b = box.querySelector('audio.b');
    var play = box.querySelector('.play'), seek = box.querySelector('.seek'), time = box.querySelector('.time');
    [a, b].forEach(function (el) { el.volume = parseFloat(el.dataset.volume || '1'); });
    function active() { return box.dataset.active === 'b' ? b : a; }
    function show() {
      var el = active();
      play.innerHTML = el.paused ? '&#9654; play' : '&#10074;&#10074; pause';
      if (el.duration) { seek.value = Math.round(1000 * el.currentTime / el.duration); }
      time.textContent = fmt(el.currentTime);
    }
    function pick(which) {
      var from = active(), to = which === 'b' ? b : a;
      if (from === to) { return; }
      var playing = !from.paused;
      to.currentTime = from.currentTime;
      from.pause();
      box.dataset.active = which;
      box.querySelector('.pick.a').classList.toggle('on', which === 'a');
      box.querySelector('.pick.b').classList.toggle('on', which === 'b');
      if (playing) { to.play(); }
      show();
    }
    box.querySelector('.pick.a').addEventListener('click', function () { pick('a'); });
    box.querySelector('.pick.b').addEventListener('click', function () { pick('b'); });
    play.addEventListener('click', function () {
      var el = active();
      if (el.paused) {
        document.querySelectorAll('audio').forEach(function (o) { if (o !== el) { o.pause(); } });
        el.play();
      } else { el.pause(); }
    });
    seek.addEventListener('input', function () {
      var el = active();
      if (el.duration) { el.currentTime = el.duration * seek.value / 1000; }
      show();
    });
    [a, b].forEach(function (el) {
      ['timeupdate', 'play', 'pause', 'ended'].forEach(function (ev) { el.addEventListener(ev, show); });
    });
  });
})();
